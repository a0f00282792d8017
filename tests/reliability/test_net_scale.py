"""Building a net costs the same per layer however deep the net is."""
import sys
from pathlib import Path

import pycaffe_mct as caffe

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_net_build import deep_net  # noqa: E402  (the nets the bench times)


def traced_lines(function):
    """How many Python lines ``function()`` executes (a count, not a time: deterministic)."""
    count = [0]

    def tracer(frame, event, arg):
        if event == "line":
            count[0] += 1
        return tracer

    sys.settrace(tracer)
    try:
        function()
    finally:
        sys.settrace(None)
    return count[0]


def test_building_twice_the_layers_executes_twice_the_lines():
    small, large = (traced_lines(lambda depth=depth: caffe.Net(deep_net(depth), caffe.TEST))
                    for depth in (300, 600))
    assert large / small < 2.05, (small, large)


def test_a_net_of_5000_layers_builds():
    net = caffe.Net(deep_net(5000), caffe.TEST)
    assert len(net.layers) == 5001
    assert net.blobs["x2500"].shape == (1, 2, 2, 2)
