"""The training loop: smoothed loss, display and test lines, callbacks, stopping."""
import io
import re

import numpy as np
import pytest

from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt
from pycaffe_mct.solvers import NonFiniteError, get_solver
from pycaffe_mct.solvers.log import GlogWriter
from solver_helpers import TINY_NET, quiet_solver, weights_of, write_solver


def test_smoothed_loss_is_the_mean_of_the_last_average_loss_losses(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, display=1, average_loss=3, max_iter=7))
    sequence = iter([4.0, 1.0, 7.0, 2.0, 9.0, 3.0, 5.0])
    real = solver.net.forward_backward
    solver.net.forward_backward = lambda: (real(), next(sequence))[1]
    solver.step(7)
    shown = [float(v) for v in re.findall(r"iters\), loss = (\S+)", log.getvalue())]
    losses = [4.0, 1.0, 7.0, 2.0, 9.0, 3.0, 5.0]
    expected = [np.mean(losses[max(0, i - 2):i + 1]) for i in range(7)]
    np.testing.assert_allclose(shown, expected, rtol=1e-5)


def test_display_lines_follow_caffe(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, display=2, max_iter=5))
    solver.step(5)
    text = log.getvalue()
    assert re.findall(r"Iteration (\d+) \(\S+ iter/s, \S+s/2 iters\), loss = ", text) == \
        ["0", "2", "4"]
    assert re.findall(r"Iteration (\d+), lr = 0\.1\n", text) == ["0", "2", "4"]
    line = re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ solver\.cpp:258\]     Train net "
                     r"output #0: loss = (\S+) \(\* 1 = (\S+) loss\)$", text, re.M)
    assert line and line.group(1) == line.group(2)


def _fake_test_outputs(net, accuracies):
    """Make the test net's forward produce the given accuracies, one per batch."""
    values = iter(accuracies)

    def forward():
        net.blobs["acc"].data[...] = next(values)
        net.blobs["loss"].data[...] = 2.0
        return 2.0
    net.forward_prefilled = forward


@pytest.mark.parametrize("initialization,tested_at", [("true", ["0", "4", "8"]),
                                                      ("false", ["4", "8"])])
def test_tests_run_every_interval(tmp_path, initialization, tested_at):
    path = write_solver(tmp_path, test_iter=2, test_interval=4, max_iter=8,
                        test_initialization=initialization, snapshot_after_train="false")
    solver, log = quiet_solver(path)
    solver.solve()
    assert re.findall(r"Iteration (\d+), Testing net \(#0\)", log.getvalue()) == tested_at
    assert solver.iter == 8


def test_test_outputs_are_averaged_over_test_iter(tmp_path):
    path = write_solver(tmp_path, test_iter=3, test_interval=100, test_compute_loss="true")
    solver, log = quiet_solver(path)
    _fake_test_outputs(solver.test_nets[0], [0.1, 0.2, 0.6])
    means = solver.test_all()
    assert means[0]["acc"] == pytest.approx([0.3])
    text = log.getvalue()
    assert "    Test net output #0: acc = 0.3\n" in text
    assert "    Test net output #1: loss = 2 (* 1 = 2 loss)\n" in text
    assert "Test loss: 2\n" in text


def test_test_nets_see_the_trained_weights(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, test_iter=1, test_interval=100))
    solver.step(2)
    solver.test(0)
    for name in ("ip1", "ip2"):
        np.testing.assert_array_equal(solver.test_nets[0].params[name][0].data,
                                      solver.net.params[name][0].data)


def test_callbacks_run_each_iteration_before_the_update(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path))
    events = []

    class Recorder:
        def on_start(self, s):
            events.append(("start", s.iter))

        def on_gradients_ready(self, s):
            blob = s.net.learnable_params[0]
            events.append(("ready", s.iter, bool(np.abs(blob.diff).sum() > 0)))

    solver.add_callback(Recorder())
    solver.step(2)
    assert events == [("start", 0), ("ready", 0, True), ("start", 1), ("ready", 1, True)]


def test_solve_stops_at_max_iter_and_snapshots(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, max_iter=6, display=3))
    solver.solve()
    assert solver.iter == 6
    assert (tmp_path / "snap_iter_6.caffemodel").exists()
    assert (tmp_path / "snap_iter_6.solverstate").exists()
    assert "Iteration 6, loss = " in log.getvalue()
    assert log.getvalue().rstrip().endswith("Optimization Done.")


def test_no_snapshot_after_train_when_disabled(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, max_iter=3, snapshot_after_train="false"))
    solver.solve()
    assert not list(tmp_path.glob("snap_iter_*"))


def test_stop_request_ends_training_early(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, max_iter=50))
    requests = iter(["none", "none", "stop"])
    solver.set_action_function(lambda: next(requests, "none"))
    solver.solve()
    assert solver.iter == 3
    assert "Optimization stopped early." in log.getvalue()
    assert (tmp_path / "snap_iter_3.solverstate").exists()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_non_finite_loss_names_iteration_and_layer(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, base_lr=1e30, max_iter=20))
    with pytest.raises(NonFiniteError, match=r"iteration \d+: .*'ip\d'") as info:
        solver.solve()
    assert "(type InnerProduct)" in str(info.value) or "parameter ip" in str(info.value)
    assert not list(tmp_path.glob("snap_iter_*"))


def test_random_seed_makes_runs_repeatable(tmp_path):
    runs = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        solver, _ = quiet_solver(write_solver(tmp_path / sub, TINY_NET))
        solver.step(4)
        runs.append(weights_of(solver.net))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_debug_info_logs_layer_statistics(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, display=1, debug_info="true"))
    solver.step(1)
    assert re.search(r"\[Forward\] Layer ip1, top blob ip1 data: \S+", log.getvalue())
    assert re.search(r"\[Backward\] Layer ip2, param blob 0 diff: \S+", log.getvalue())


def test_gpu_mode_is_accepted_with_a_note(tmp_path):
    solver, log = quiet_solver(write_solver(tmp_path, solver_mode="GPU", device_id=1))
    assert "solver_mode GPU (device_id 1) is ignored" in log.getvalue()


STAGED_NET = TINY_NET.replace(
    'layer { name: "acc"',
    'layer { name: "acc2" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc2" '
    'include { phase: TEST stage: "extra" } }\nlayer { name: "acc"')


def test_train_and_test_states_select_layers(tmp_path):
    path = write_solver(tmp_path, STAGED_NET, test_iter=[1, 1], test_interval=100,
                        test_state=["{ }", '{ stage: "extra" }'], train_state='{ level: 2 }')
    solver, _ = quiet_solver(path)
    assert solver.net.state.level == 2 and "acc" not in solver.net.blobs
    assert [sorted(net.outputs) for net in solver.test_nets] == \
        [["acc", "loss"], ["acc", "acc2", "loss"]]


def test_inline_net_params(tmp_path):
    net = parse_prototxt(TINY_NET, caffe_pb2.NetParameter())
    param = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", test_iter=[1],
                                      test_interval=10, random_seed=1)
    param.train_net_param.CopyFrom(net)
    param.test_net_param.add().CopyFrom(net)
    solver = get_solver(param, log=GlogWriter(stream=io.StringIO()))
    solver.step(1)
    assert solver.iter == 1 and "acc" in solver.test_nets[0].outputs
