"""Logs in Caffe's glog format, read by BVLC's parse_log.py and by our tools."""
import csv
import re
import subprocess
import sys

import pytest
from PIL import Image

from pycaffe_mct.solvers import get_solver
from pycaffe_mct.solvers.log import GlogWriter, format_number
from pycaffe_mct.tools import parse_log, plot_training_log
from solver_helpers import write_solver



@pytest.fixture(scope="module")
def our_log(tmp_path_factory):
    """A log of 12 iterations with a step lr policy and tests every 4 iterations."""
    tmp_path = tmp_path_factory.mktemp("log")
    path = write_solver(tmp_path, display=2, test_iter=2, test_interval=4, max_iter=12,
                        lr_policy='"step"', stepsize=5, gamma=0.5, test_compute_loss="true")
    log_file = tmp_path / "train.log"
    solver = get_solver(str(path), log=GlogWriter(stream=open(log_file, "w")))
    solver.solve()
    solver.log.stream.close()
    return log_file


def test_prefix_is_glogs_classic_one(our_log):
    for line in our_log.read_text().splitlines():
        if not line.startswith(("I", "W", "E")) or "] " not in line:
            continue      # continuation lines of the multi-line solver parameters
        assert re.match(r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] ", line), line


def test_numbers_print_like_cpp_streams():
    assert [format_number(v) for v in (0.1, 1e-8, 3.413951, 100000.0, 1234567.0, 0)] == \
        ["0.1", "1e-08", "3.41395", "100000", "1.23457e+06", "0"]


def test_our_parser_reads_our_log(our_log):
    train, test = parse_log.parse_log(str(our_log))
    assert [r["NumIters"] for r in train] == [0, 2, 4, 6, 8, 10]
    assert [r["LearningRate"] for r in train] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert [r["NumIters"] for r in test] == [0, 4, 8, 12]
    assert set(test[0]) == {"NumIters", "Seconds", "LearningRate", "acc", "loss"}
    assert all(0 <= r["acc"] <= 1 for r in test)
    assert [r["Seconds"] for r in train] == sorted(r["Seconds"] for r in train)


@pytest.mark.parametrize("name", ["train_small.log", "train_small.classic-glog.log"])
def test_our_parser_reads_caffes_logs(fixtures_dir, name):
    train, test = parse_log.parse_log(str(fixtures_dir / name))
    assert [r["NumIters"] for r in train] == list(range(10)) and test == []
    assert (train[0]["loss"], train[9]["loss"]) == (3.41395, 1.53373)
    assert [r["LearningRate"] for r in train] == [0.001] * 10
    assert train[1]["Seconds"] == pytest.approx(0.243857 - 0.242367, abs=1e-6)  # at its output line


def test_parse_log_command_writes_csv_tables(our_log, tmp_path):
    assert parse_log.main([str(our_log), str(tmp_path)]) == 0
    with open(tmp_path / "train.log.test") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["NumIters", "Seconds", "LearningRate", "acc", "loss"]
    assert len(rows) == 4
    assert (tmp_path / "train.log.train").exists()


def _caffe_parse_log(fixtures_dir, tmp_path):
    """BVLC's tools/extra/parse_log.py (kept with the golden files), its one Python-2 print
    made a call."""
    tools = tmp_path / "caffe_tools"
    tools.mkdir()
    for name in ("parse_log.py", "extract_seconds.py"):
        text = (fixtures_dir / "tools_extra" / name).read_text()
        text = text.replace("print 'Wrote %s' % output_filename",
                            "print('Wrote %s' % output_filename)")
        (tools / name).write_text(text)
    return tools / "parse_log.py"


def test_caffes_parse_log_reads_our_log(our_log, fixtures_dir, tmp_path):
    script = _caffe_parse_log(fixtures_dir, tmp_path)
    out = tmp_path / "csv"
    out.mkdir()
    subprocess.run([sys.executable, str(script), str(our_log), str(out)], check=True,
                   cwd=script.parent, capture_output=True)
    with open(out / "train.log.train") as handle:
        caffe_train = list(csv.DictReader(handle))
    with open(out / "train.log.test") as handle:
        caffe_test = list(csv.DictReader(handle))
    ours_train, ours_test = parse_log.parse_log(str(our_log))
    assert [float(r["NumIters"]) for r in caffe_train] == [r["NumIters"] for r in ours_train]
    assert [float(r["loss"]) for r in caffe_train] == [r["loss"] for r in ours_train]
    assert [float(r["acc"]) for r in caffe_test] == [r["acc"] for r in ours_test]
    assert [float(r["NumIters"]) for r in caffe_test] == [0, 4, 8, 12]


@pytest.mark.parametrize("x_axis", ["iters", "seconds"])
def test_plot_writes_a_png(our_log, tmp_path, x_axis):
    image = tmp_path / f"curves_{x_axis}.png"
    assert plot_training_log.main([str(our_log), str(image), "--x", x_axis]) == 0
    with Image.open(image) as png:
        assert png.format == "PNG" and png.size[0] > 300


def test_learning_rate_is_drawn_as_steps(our_log, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plot_training_log, "save_png",
                        lambda figure, path, **options: figures.append(figure))
    plot_training_log.plot_training_log(str(our_log), str(tmp_path / "curves.png"))
    (line,) = figures[0].axes[2].get_lines()
    assert line.get_drawstyle() == "steps-post"
    assert list(line.get_ydata()) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


def test_missing_matplotlib_names_the_plot_extra(our_log, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_training_log.main([str(our_log), str(tmp_path / "curves.png")]) == 1
    assert "pip install -e '.[plot]'" in capsys.readouterr().err


def test_tools_refuse_a_missing_log(tmp_path, capsys):
    assert parse_log.main([str(tmp_path / "none.log"), str(tmp_path)]) == 1
    assert plot_training_log.main([str(tmp_path / "none.log"), str(tmp_path / "x.png")]) == 1
    assert "none.log: no such log file" in capsys.readouterr().err
