"""Failing writes: every writer names the path and the reason, keeps the last good file,
and leaves no temporary file; temporaries a killed writer left are removed at the next start.

A full disk is made real without root in two ways: ``/dev/full`` (every write
fails with ENOSPC) for the log, and a file-size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored, so writes past it fail with EFBIG) for files written next to
their target.
"""
import contextlib
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import cli
from pycaffe_mct.data import LMDBWriter, image_to_datum, key_for
from pycaffe_mct.errors import OutputError
from pycaffe_mct.proto_io import TEMP_MARK, remove_stale_temporaries
from pycaffe_mct.solvers import get_solver
from pycaffe_mct.solvers.log import GlogWriter
from pycaffe_mct.tools import convert_imageset, plot_training_log
from hostile_helpers import DUMMY_NET, files_under, png_bytes, write_dummy_solver

LIMIT = 32 << 10
WIDE_NET = DUMMY_NET.replace("num_output: 2", "num_output: 4000")   # 48 KB of weights


@contextlib.contextmanager
def file_size_limit(nbytes):
    """Files may not grow past ``nbytes`` while inside (writes fail with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def temporaries(directory):
    return [p for p in directory.rglob("*") if TEMP_MARK in p.name]


@pytest.fixture
def solver(tmp_path):
    path = write_dummy_solver(tmp_path, net_text=WIDE_NET)
    return get_solver(str(path), log=GlogWriter(enabled=False))


def _snapshot(solver):
    solver.snapshot()


def _save_weights(solver):
    solver.net.save(solver.param.snapshot_prefix + "_iter_0.caffemodel")


@pytest.mark.parametrize("write", [_snapshot, _save_weights])
def test_a_failing_model_write_names_the_file_and_keeps_the_last_good_one(solver, tmp_path,
                                                                          write):
    write(solver)
    target = tmp_path / "snap_iter_0.caffemodel"
    good = target.read_bytes()
    assert len(good) > LIMIT
    solver.net.learnable_params[0].data[...] += 1       # a different model, same path
    with file_size_limit(LIMIT), pytest.raises(OutputError) as info:
        write(solver)
    assert str(info.value).startswith(f"{target}: cannot write: File too large")
    assert "\n" not in str(info.value)
    assert target.read_bytes() == good
    assert not temporaries(tmp_path)


def test_train_command_on_a_full_disk_prints_one_error_line(tmp_path, capsys):
    path = write_dummy_solver(tmp_path, net_text=WIDE_NET, max_iter=4, snapshot=2)
    # A first run writes the snapshot (and any kernel cache) before the limit.
    assert cli.main(["train", "--solver", str(path), "--iterations", "2"]) == 0
    good = (tmp_path / "snap_iter_2.caffemodel").read_bytes()
    capsys.readouterr()
    with file_size_limit(LIMIT):
        assert cli.main(["train", "--solver", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'snap_iter_2.caffemodel'}: cannot write: File too large" in err
    assert "Traceback" not in err
    assert (tmp_path / "snap_iter_2.caffemodel").read_bytes() == good
    assert not temporaries(tmp_path)


def test_a_log_on_a_full_disk_names_the_file():
    log = GlogWriter(stream=open("/dev/null", "w"), path="/dev/full")
    with pytest.raises(OutputError, match=r"^/dev/full: cannot append to the log: "
                                          r"No space left on device"):
        log.info("one line too many")
    log.info("later lines still reach the stream")      # the file is dropped, not retried
    log.stream.close()


def test_a_plot_that_cannot_be_written_keeps_the_previous_one(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("I1202 10:00:00.000000 1 solver.cpp:239] Iteration 0 (0 iter/s, 0s/0 "
                   "iters), loss = 2\n"
                   "I1202 10:00:01.000000 1 solver.cpp:239] Iteration 1 (1 iter/s, 1s/1 "
                   "iters), loss = 1\n")
    image = tmp_path / "loss.png"
    plot_training_log.plot_training_log(str(log), str(image))   # also fills font caches
    good = image.read_bytes()
    with file_size_limit(1024), pytest.raises(OutputError, match=f"^{image}: cannot write"):
        plot_training_log.plot_training_log(str(log), str(image))
    assert image.read_bytes() == good
    assert not temporaries(tmp_path)


def test_a_conversion_on_a_full_disk_names_the_database_and_keeps_its_committed_records(
        tmp_path, capsys):
    images = tmp_path / "img"
    images.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    from PIL import Image
    for i in range(8):
        Image.fromarray(noise ^ i).save(images / f"{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(8)))
    with file_size_limit(40 << 10):
        code = convert_imageset.main([f"{images}/", str(tmp_path / "list.txt"),
                                      str(tmp_path / "db"), "--jobs", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'db'}: cannot write records:" in err and "Traceback" not in err
    assert (tmp_path / "db" / "CONVERSION_INCOMPLETE").is_file()   # a valid, marked prefix


def test_stale_temporaries_of_dead_writers_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f"snap_iter_4.caffemodel{TEMP_MARK}{dead}-k2j4_x"
    live = tmp_path / f"snap_iter_6.caffemodel{TEMP_MARK}{1}-abcdef"          # init runs
    foreign = tmp_path / f"other_iter_4.caffemodel{TEMP_MARK}{dead}-k2j4_x"    # not our prefix
    user_file = tmp_path / "snap_notes.tmp"
    for path in (stale, live, foreign, user_file):
        path.write_bytes(b"x" * 100)
    path = write_dummy_solver(tmp_path)
    lines = []
    log = GlogWriter(stream=type("Lines", (), {"write": lines.append, "flush": lambda s: 0})())
    get_solver(str(path), log=log)
    assert not stale.exists()
    assert live.exists() and foreign.exists() and user_file.exists()
    assert any(f"Removed {stale}" in line for line in lines)


def test_removal_leaves_other_directories_alone(tmp_path):
    assert remove_stale_temporaries(str(tmp_path / "missing" / "snap")) == []


def test_convert_imageset_skips_and_counts_decompression_bombs(tmp_path, capsys):
    from hostile_helpers import png_declaring
    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "bomb.png").write_bytes(png_declaring(50000, 50000))
    (tmp_path / "list.txt").write_text("ok.png 0\nbomb.png 1\nok.png 1\n")
    assert convert_imageset.main([f"{tmp_path}/", str(tmp_path / "list.txt"),
                                  str(tmp_path / "db")]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 images" in captured.out and "skipped 1" in captured.out
    assert f"{tmp_path / 'bomb.png'}" in captured.err and "decompression bomb" in captured.err


def _onehot_model_and_set(directory, classes=4):
    """A deploy net scoring one-hot 1x1x4 "images", and an LMDB of 8 of them."""
    prototxt = directory / "deploy.prototxt"
    prototxt.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 '
        f'dim: 1 dim: {classes} }} }} }}\nlayer {{ name: "ip" type: "InnerProduct" '
        f'bottom: "data" top: "logits" inner_product_param {{ num_output: {classes} }} }}\n'
        'layer { name: "prob" type: "Softmax" bottom: "logits" top: "prob" }\n')
    net = caffe.Net(str(prototxt), caffe.TEST)
    net.params["ip"][0].data[...] = 0.01 * np.eye(classes)
    net.save(str(directory / "deploy.caffemodel"))
    with LMDBWriter(str(directory / "set_lmdb")) as writer:
        for i in range(8):
            image = np.where(np.arange(classes) == i % classes, 255, 0).astype(np.uint8)
            writer.put(key_for(i, f"{i}.png"),
                       image_to_datum(image.reshape(1, classes, 1), i % classes).SerializeToString())
    return ["--model", str(prototxt), "--weights", str(directory / "deploy.caffemodel"),
            "--source", str(directory / "set_lmdb"), "--batch-size", "4"]


def test_a_label_issue_report_that_cannot_be_written_keeps_the_previous_one(tmp_path, capsys):
    flags = _onehot_model_and_set(tmp_path)
    out = tmp_path / "report"
    assert cli.main(["label_issues", *flags, "--out", str(out)]) == 0
    before = files_under(out)
    capsys.readouterr()
    with file_size_limit(512):
        assert cli.main(["label_issues", *flags, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: cannot write the label-issue report: File too large" in err
    assert "Traceback" not in err
    assert files_under(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.caffemodel",
                                                           "deploy.prototxt", "report",
                                                           "set_lmdb"]   # no staging left
