"""``pycaffe_mct train`` / ``test``: resume, fine-tune, signals, non-finite stops, bad input."""
import importlib
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from pycaffe_mct import cli
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto
from pycaffe_mct.commands import train as commands
from solver_helpers import CONSTANT_NET, write_solver

FIELDS = {"type": '"SGD"', "momentum": 0.9, "lr_policy": '"step"', "stepsize": 2,
          "gamma": 0.5, "display": 2}


def train(*argv):
    return cli.main(["train", *map(str, argv)])


def test_train_writes_snapshots_and_logs(tmp_path, capsys):
    solver = write_solver(tmp_path, max_iter=4, snapshot=2, **FIELDS)
    assert train("--solver", solver) == 0
    assert {p.name for p in tmp_path.glob("snap_iter_*")} == {
        f"snap_iter_{i}.{ext}" for i in (2, 4) for ext in ("caffemodel", "solverstate")}
    err = capsys.readouterr().err
    assert "Starting Optimization" in err and err.rstrip().endswith("Optimization Done.")


def test_resumed_training_ends_with_the_same_bytes(tmp_path):
    straight = write_solver(tmp_path, max_iter=6, snapshot=3, **FIELDS)
    assert train("--solver", straight) == 0
    resumed = write_solver(tmp_path, name="resumed.prototxt", max_iter=6,
                           snapshot_prefix=f'"{tmp_path / "again"}"', **FIELDS)
    assert train("--solver", resumed, "--snapshot", tmp_path / "snap_iter_3.solverstate") == 0
    assert (tmp_path / "again_iter_6.caffemodel").read_bytes() == \
        (tmp_path / "snap_iter_6.caffemodel").read_bytes()


def test_weights_fine_tune_from_a_caffemodel(tmp_path, capsys):
    assert train("--solver", write_solver(tmp_path, max_iter=2, **FIELDS)) == 0
    (tmp_path / "ft").mkdir()
    solver = write_solver(tmp_path / "ft", max_iter=5, **FIELDS)
    model = tmp_path / "snap_iter_2.caffemodel"
    assert train("--solver", solver, "--weights", model, "--iterations", 0) == 0
    assert f"Finetuning from {model}" in capsys.readouterr().err
    assert (tmp_path / "ft" / "snap_iter_0.caffemodel").read_bytes() == model.read_bytes()


def test_test_command_averages_the_outputs(tmp_path, capsys):
    assert train("--solver", write_solver(tmp_path, max_iter=2, **FIELDS)) == 0
    capsys.readouterr()
    assert cli.main(["test", "--model", str(tmp_path / "net.prototxt"), "--weights",
                     str(tmp_path / "snap_iter_2.caffemodel"), "--iterations", "3"]) == 0
    err = capsys.readouterr().err
    batches = [float(v) for v in re.findall(r"\] Batch \d, acc = (\S+)", err)]
    assert len(batches) == 3
    mean = float(re.search(r"\] acc = (\S+)", err).group(1))
    assert mean == pytest.approx(np.mean(batches), abs=1e-5)
    assert "] Loss: " in err and re.search(r"\] loss = \S+ \(\* 1 = \S+ loss\)", err)


def _signal_at(monkeypatch, schedule):
    """Make ``train`` send itself signals at the start of the given iterations."""
    build = commands.build_train_solver

    class Sender:
        def on_start(self, solver):
            if solver.iter in schedule:
                os.kill(os.getpid(), schedule[solver.iter])

    def build_with_sender(args):
        solver = build(args)
        solver.add_callback(Sender())
        return solver
    monkeypatch.setattr(commands, "build_train_solver", build_with_sender)


def test_sighup_snapshots_and_ctrl_c_stops_with_a_snapshot(tmp_path, capsys, monkeypatch):
    _signal_at(monkeypatch, {2: signal.SIGHUP, 4: signal.SIGINT})
    assert train("--solver", write_solver(tmp_path, max_iter=100, **FIELDS)) == 0
    assert "Optimization stopped early." in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("snap_iter_*.solverstate")) == \
        ["snap_iter_3.solverstate", "snap_iter_5.solverstate"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signal_effects_are_configurable(tmp_path, capsys, monkeypatch):
    _signal_at(monkeypatch, {1: signal.SIGINT, 3: signal.SIGHUP})
    solver = write_solver(tmp_path, max_iter=100, snapshot_after_train="false", **FIELDS)
    assert train("--solver", solver, "--sigint_effect", "none", "--sighup_effect", "stop") == 0
    assert "Optimization stopped early." in capsys.readouterr().err
    assert not list(tmp_path.glob("snap_iter_*"))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_non_finite_loss_stops_and_keeps_the_last_good_snapshot(tmp_path, capsys):
    solver = write_solver(tmp_path, max_iter=20, snapshot=1, base_lr=1e30, type='"SGD"')
    assert train("--solver", solver) == 1
    err = capsys.readouterr().err
    assert "error: training stopped: iteration 1: the loss is nan" in err
    assert "'ip2' (type InnerProduct)" in err
    good = tmp_path / "snap_iter_1.solverstate"
    assert f"the last good snapshot is {good}" in err
    assert read_binary_proto(good, caffe_pb2.SolverState()).iter == 1
    assert not (tmp_path / "snap_iter_2.solverstate").exists()


@pytest.mark.parametrize("fields,message", [
    ({"net": '"missing.prototxt"'}, r"solver.prototxt:\d+: net file 'missing.prototxt' "
                                    r"does not exist"),
    ({"type": '"Momentum"'}, r"solver.prototxt:\d+: unknown solver type 'Momentum'; known "
                             r"types: AdaDelta, AdaGrad, Adam, Nesterov, RMSProp, SGD"),
    ({"lr_policy": '"cosine"'}, r"solver.prototxt:\d+: unknown lr_policy 'cosine'; known "
                                r"policies: fixed, step"),
    ({"lr_policy": '"multistep"', "stepvalue": [100, 50]},
     r"solver.prototxt:\d+: stepvalue must increase: 50 follows 100"),
    ({"solver_type": "ADAM", "type": '"SGD"'}, r"solver.prototxt:\d+: give the solver type "
                                               r"either"),
    ({"test_iter": 5}, r"solver.prototxt:\d+: test nets need a positive test_interval"),
])
def test_bad_solver_files_are_refused_before_training(tmp_path, capsys, fields, message):
    assert train("--solver", write_solver(tmp_path, **fields)) == 1
    err = capsys.readouterr().err
    assert "Starting Optimization" not in err
    assert re.search("error: .*" + message, err), err


def test_deprecated_solver_type_enum_is_upgraded(tmp_path, capsys):
    solver = write_solver(tmp_path, solver_type="NESTEROV", max_iter=1, momentum=0.9)
    assert train("--solver", solver) == 0
    assert 'type: "Nesterov"' in capsys.readouterr().err


def test_snapshot_of_another_net_lists_names_and_shapes(tmp_path, capsys):
    assert train("--solver", write_solver(tmp_path, max_iter=1, **FIELDS)) == 0
    (tmp_path / "b").mkdir()
    other = write_solver(tmp_path / "b", CONSTANT_NET.replace("num_output: 3", "num_output: 4"),
                         max_iter=3, **FIELDS)
    capsys.readouterr()
    assert train("--solver", other, "--snapshot", tmp_path / "snap_iter_1.solverstate") == 1
    err = capsys.readouterr().err
    assert "does not fit net 'tiny'" in err and "ip2[0] (4, 6)" in err and "(3, 6)" in err
    assert "Starting Optimization" not in err


def test_snapshot_and_weights_together_are_refused(tmp_path, capsys):
    assert train("--solver", write_solver(tmp_path), "--snapshot", "a.solverstate",
                 "--weights", "b.caffemodel") == 1
    assert "not both" in capsys.readouterr().err


def test_mpi_launch_attaches_data_parallelism(tmp_path, monkeypatch):
    launch = importlib.import_module("pycaffe_mct.parallel.launch")
    parallel = importlib.import_module("pycaffe_mct.parallel")
    monkeypatch.setattr(launch, "mpi_world_size", lambda: 2)
    calls = []
    monkeypatch.setattr(parallel, "init_parallel", lambda: calls.append("init"))
    monkeypatch.setattr(parallel, "attach_data_parallel", calls.append)
    assert train("--solver", write_solver(tmp_path, max_iter=1)) == 0
    assert calls[0] == "init" and calls[1].iter == 1 and len(calls) == 2


def test_single_process_training_attaches_nothing(tmp_path, monkeypatch):
    parallel = importlib.import_module("pycaffe_mct.parallel")
    monkeypatch.setattr(parallel, "attach_data_parallel", pytest.fail)
    assert train("--solver", write_solver(tmp_path, max_iter=1)) == 0


def test_single_process_runs_do_not_import_mpi4py():
    import subprocess
    import sys
    code = ("import sys, pycaffe_mct.commands.train, pycaffe_mct; "
            "print('mpi4py' in sys.modules)")
    repo = Path(commands.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=repo)
    assert out.stdout.strip() == "False"
