"""LeNet on the bundled digits, from the command line: accuracy and bit-exact resume."""
import re
import shutil
from pathlib import Path

import pytest

from pycaffe_mct import cli
from pycaffe_mct.tools.make_digits_dataset import make_digits_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """Train models/lenet from a scratch directory holding the digits; returns it."""
    run = tmp_path_factory.mktemp("lenet")
    make_digits_dataset(str(run / "data" / "digits"))
    shutil.copytree(REPO / "models" / "lenet", run / "models" / "lenet")
    return run


def _final_test_accuracy(log_text):
    return float(re.findall(r"Test net output #\d+: accuracy = (\S+)", log_text)[-1])


@pytest.mark.slow
def test_lenet_trains_to_97_percent_and_resumes_exactly(lenet_run, monkeypatch):
    monkeypatch.chdir(lenet_run)
    solver = "models/lenet/lenet_solver.prototxt"
    assert cli.main(["train", "--solver", solver, "--log", "train.log"]) == 0
    assert _final_test_accuracy(Path("train.log").read_text()) >= 0.97
    final = Path("runs/lenet/lenet_iter_200.caffemodel")
    straight = final.read_bytes()
    assert cli.main(["test", "--model", "models/lenet/lenet_train_test.prototxt", "--weights",
                     str(final), "--iterations", "4", "--log", "test.log"]) == 0
    assert float(re.findall(r"\] accuracy = (\S+)", Path("test.log").read_text())[-1]) >= 0.97
    final.unlink()
    assert cli.main(["train", "--solver", solver, "--snapshot",
                     "runs/lenet/lenet_iter_100.solverstate"]) == 0
    assert final.read_bytes() == straight
    # Each --log file belonged to its command: the resumed run wrote to neither.
    assert "Restoring previous solver status" not in Path("train.log").read_text()
    assert "Restoring previous solver status" not in Path("test.log").read_text()
