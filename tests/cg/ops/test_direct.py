"""Direct convolution in register blocks (``cg/ops/direct.py``): results and gradients equal
a plain numpy convolution's on every executor, for whole and half-vector rows, tap counts
that leave the filter gradient's last block short, and paddings that frame the input
gradient differently; the bits do not depend on the thread count; and the rule that
chooses it."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops, scheduler
from pycaffe_mct.cg.ops import direct
from pycaffe_mct.cg.ops.convolution import Window
from .conv_helpers import (  # noqa: F401 (mode: a fixture)
    HOSTS, calls_to, check_adjoints, check_deconvolution_backward, check_forward,
    check_weight_gradients_do_not_depend_on_the_thread_count, layer_arrays, mode)

CASES = [  # x shape, out channels, window
    ((2, 8, 16, 16), 16, Window((5, 5), (2, 2))),    # rows of whole vectors; 200 taps
    ((3, 8, 8, 8), 8, Window((3, 3), (1, 1))),       # rows of 8 pixels: half vectors
    ((2, 4, 8, 16), 8, Window((5, 5), (2, 2))),      # 100 taps: the last block has one
    ((2, 8, 10, 10), 8, Window((3, 3))),             # no padding: the input gradient pads 2
    ((2, 8, 8, 16), 8, Window((3, 5), (1, 2))),      # a kernel wider than high
    ((2, 3, 18, 18), 8, Window((3, 3))),             # 3 channels: input gradient by im2col
]


@pytest.fixture
def by_direct(monkeypatch):
    """The test fails unless its convolutions went by the direct kernels."""
    calls = calls_to(monkeypatch, direct, ["convolve_kernel", "weight_grad_kernel"])
    yield calls
    assert calls, "no convolution went by the direct kernels"


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_direct_forward_is_the_numpy_convolution(by_direct, mode, shape, outputs, window):
    check_forward(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_direct_gradients_are_the_adjoints(by_direct, mode, shape, outputs, window):
    check_adjoints(shape, outputs, window)
    assert "weight_grad_kernel" in by_direct


@pytest.mark.parametrize("shape,outputs,window", CASES[:2])
def test_direct_deconvolution_backward(by_direct, mode, shape, outputs, window):
    check_deconvolution_backward(shape, outputs, window)


def test_weight_gradients_do_not_depend_on_the_thread_count(by_direct, monkeypatch):
    check_weight_gradients_do_not_depend_on_the_thread_count(
        monkeypatch, shape=(3, 4, 8, 16), outputs=8, window=Window((5, 5), (2, 2)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_outputs_and_input_gradients_do_not_depend_on_the_thread_count(by_direct, monkeypatch,
                                                                       threads):
    """Any split of the units over threads, on the fast executor or tile by tile on the
    literal one, gives the same bits."""
    shape, outputs, window = CASES[1]
    x, weight, dy = layer_arrays(shape, outputs, window)

    def run():
        y, dx = np.empty(dy.shape, np.float32), np.empty(x.shape, np.float32)
        ops.convolve(x, weight, window, y=y)
        ops.convolve_transpose(dy, weight, window, dx=dx)
        return y, dx
    with scheduler.execution("literal"):
        expected = run()
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[threads])
    with scheduler.execution("fast"):
        got = run()
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_forward_sums_in_im2col_order():
    """Each output is one running sum over the taps in (c, i, j) order, as the GEMM over
    im2col's columns sums it: the two give the same bits."""
    shape, outputs, window = CASES[0]
    x, weight, _ = layer_arrays(shape, outputs, window)
    y = np.empty((shape[0], outputs, *window.output_hw(*shape[2:])), np.float32)
    expected = np.empty_like(y)
    ops.convolve(x, weight, window, y=y)
    with ops.convolution.im2col_only(), scheduler.execution("fast"):
        ops.convolve(x, weight, window, y=expected)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("window,channels,outputs,out_hw,expected", [
    (Window((5, 5), (2, 2)), 32, 32, (16, 16), True),          # CIFAR10-quick's conv2
    (Window((5, 5), (2, 2)), 3, 32, (32, 32), True),           # ... conv1
    (Window((5, 5), (2, 2)), 32, 64, (8, 8), True),            # ... conv3: half vectors
    (Window((3, 3), (1, 1)), 64, 64, (56, 56), True),
    (Window((3, 3), (1, 1)), 128, 128, (56, 56), False),       # too many channels
    (Window((3, 3), (1, 1)), 64, 100, (16, 16), False),        # too many output channels
    (Window((3, 3), (1, 1)), 32, 20, (16, 16), False),         # not whole blocks of 8
    (Window((3, 3), (1, 1)), 1, 32, (16, 16), False),          # one channel: single_channel
    (Window((3, 3), (1, 1)), 32, 32, (12, 12), False),         # rows not whole half vectors
    (Window((3, 3), (1, 1)), 32, 32, (4, 8), True),
    (Window((3, 3), (1, 1)), 32, 32, (2, 8), False),           # plane not whole blocks of 32
    (Window((3, 3), (1, 1), (2, 2)), 32, 32, (16, 16), False),          # strided
    (Window((3, 3), (2, 2), (1, 1), (2, 2)), 32, 32, (16, 16), False),  # dilated
    (Window((3, 3), (1, 1), group=2), 32, 32, (16, 16), False),         # channel groups
    (Window((1, 1)), 32, 32, (16, 16), False),                 # pointwise: a plain GEMM
])
def test_direct_takes_small_channel_stride_1_convolutions(window, channels, outputs, out_hw,
                                                          expected):
    assert direct.applies(window, channels, outputs, out_hw) is expected


@pytest.mark.parametrize("window,in_hw,expected", [
    (Window((5, 5), (2, 2)), (16, 16), True),
    (Window((3, 3), (3, 3)), (16, 16), False),    # the turned convolution's frame < 0
    (Window((3, 3)), (18, 18), False),            # the input's rows not whole half vectors
])
def test_the_input_gradient_goes_direct_where_its_turned_convolution_would(window, in_hw,
                                                                          expected):
    assert direct.applies_transpose(window, 32, 32, in_hw) is expected
