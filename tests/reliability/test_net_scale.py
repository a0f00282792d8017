"""Building a net costs the same per layer however deep the net is."""
import sys

import pycaffe_mct as caffe
from pycaffe_mct.proto import caffe_pb2


def deep_net(depth):
    """Input, then ``depth`` blocks of a 1x1 convolution, an in-place ReLU and a Scale."""
    net = caffe_pb2.NetParameter(name="deep")
    net.layer.add(name="data", type="Input", top=["x0"]).input_param.shape.add(dim=[1, 2, 2, 2])
    for i in range(depth):
        conv = net.layer.add(name=f"conv{i}", type="Convolution", bottom=[f"x{i}"],
                             top=[f"x{i + 1}"])
        conv.convolution_param.num_output = 2
        conv.convolution_param.kernel_size.append(1)
        net.layer.add(name=f"relu{i}", type="ReLU", bottom=[f"x{i + 1}"], top=[f"x{i + 1}"])
    return net


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
                    for depth in (150, 300))
    assert large / small < 2.05, (small, large)


def test_a_net_of_5000_layers_builds():
    net = caffe.Net(deep_net(2500), caffe.TEST)
    assert len(net.layers) == 5001
    assert net.blobs["x2500"].shape == (1, 2, 2, 2)
