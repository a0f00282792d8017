"""bench/validate_scaling.py's fit and its training nets (the measurements need mpiexec and
a quiet machine, so they are the bench's, not the suite's)."""
import importlib.util
from pathlib import Path

import pytest

from pycaffe_mct.layer import TRAIN
from pycaffe_mct.net import Net

BENCH = Path(__file__).resolve().parents[2] / "bench" / "validate_scaling.py"
spec = importlib.util.spec_from_file_location("validate_scaling", BENCH)
validate_scaling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate_scaling)


@pytest.mark.parametrize("truth", [(40e-6, 1 / 4e9, 1 / 40e9),     # link-bound
                                   (40e-6, 1 / 4e9, 1 / 1e9)])     # adder-bound
def test_fit_reproduces_the_times_that_made_the_points(truth):
    """Adder-bound, only beta + gamma shows in the times (the link's share is one piece), so
    the fit is judged by the times it predicts, and by the latency."""
    points = [{"ranks": ranks, "bytes": size,
               "seconds": validate_scaling.predict_allreduce(truth, size, ranks)}
              for ranks in validate_scaling.RANKS
              for size in validate_scaling.FIT_BYTES + validate_scaling.HELD_OUT_BYTES]
    fitted = validate_scaling.fit(points[::2])
    assert fitted[0] == pytest.approx(truth[0], rel=0.05)
    for point in points:
        predicted = validate_scaling.predict_allreduce(fitted, point["bytes"], point["ranks"])
        assert predicted == pytest.approx(point["seconds"], rel=0.02)


def test_ranks_beyond_the_cores_share_them(monkeypatch):
    monkeypatch.setattr(validate_scaling.os, "cpu_count", lambda: 2)
    alone, shared = (validate_scaling.local_network(1e-5, 1e-9, 1e-10, ranks)
                     for ranks in (2, 4))
    assert shared.latency_s == 2 * alone.latency_s
    assert shared.seconds_per_byte == 2 * alone.seconds_per_byte
    assert shared.reduce_seconds_per_byte == pytest.approx(2 * alone.reduce_seconds_per_byte)


def test_training_net_trains_the_deploy_net_on_dummy_data():
    param = validate_scaling.training_net("models/lenet/lenet_deploy.prototxt", 4)
    net = Net(param, TRAIN)
    assert [layer.type for layer in param.layer][0] == "DummyData"
    assert param.layer[-1].type == "SoftmaxWithLoss"
    assert net.blobs["data"].shape == (4, 1, 28, 28) and net.forward_backward() > 0
