"""Logs in Caffe's glog format, read by the patterns of BVLC's parse_log.py and by our tools."""
import csv
import re
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


# The line patterns BVLC Caffe's tools/extra/parse_log.py matches (read from its source as a
# format fact): an iteration number, a train or test output, the learning rate.
CAFFE_ITERATION = re.compile(r"Iteration (\d+)")
CAFFE_OUTPUT = re.compile(r"(Train|Test) net output #(\d+): (\S+) = ([.\deE+-]+)")
CAFFE_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def _caffe_reading(log):
    """What Caffe's parse_log.py takes from a log: (iteration, phase, name, value) per output
    line and the learning rates, each output credited to the last iteration seen."""
    iteration, outputs, rates = -1, [], []
    for line in log.read_text().splitlines():
        if match := CAFFE_ITERATION.search(line):
            iteration = int(match.group(1))
        if match := CAFFE_OUTPUT.search(line):
            outputs.append((iteration, match.group(1), match.group(3), float(match.group(4))))
        if match := CAFFE_LEARNING_RATE.search(line):
            rates.append(float(match.group(1)))
    return outputs, rates


def test_caffes_parse_log_patterns_read_our_log(our_log):
    outputs, rates = _caffe_reading(our_log)
    ours_train, ours_test = parse_log.parse_log(str(our_log))
    train = [(i, value) for i, phase, name, value in outputs if phase == "Train" and name == "loss"]
    assert train == [(r["NumIters"], r["loss"]) for r in ours_train]
    test = [(i, value) for i, phase, name, value in outputs if phase == "Test" and name == "acc"]
    assert test == [(r["NumIters"], r["acc"]) for r in ours_test]
    assert [i for i, _ in test] == [0, 4, 8, 12]
    assert rates == [r["LearningRate"] for r in ours_train]


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
