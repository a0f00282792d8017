"""Convolutions of a one-channel input by shifted runs of the image: results and gradients
equal a direct convolution's on every executor, for paddings and odd sizes; the rule that
chooses the path; and weight gradients that do not depend on the thread count."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from pycaffe_mct.cg.ops import convolution, single_channel
from pycaffe_mct.cg.ops.convolution import Window
from .conv_helpers import (  # noqa: F401 (mode: a fixture)
    check_adjoints, check_deconvolution_backward, check_forward,
    check_weight_gradients_do_not_depend_on_the_thread_count, layer_arrays, mode)

CASES = [  # x shape, out channels, window
    ((3, 1, 9, 8), 4, Window((5, 5))),               # LeNet's conv1, small
    ((2, 1, 7, 6), 3, Window((3, 3), (1, 1))),       # padded: the image is framed first
    ((2, 1, 5, 7), 2, Window((2, 3), (2, 0))),       # rectangular kernel, one-axis padding
    ((1, 1, 4, 4), 5, Window((1, 1))),               # pointwise
]


@pytest.fixture
def by_runs(monkeypatch):
    """The test fails unless a convolution went by the single-channel kernels."""
    calls = []
    for name in ("single_channel_forward_kernel", "single_channel_weight_grad_kernel"):
        real = getattr(single_channel, name)
        monkeypatch.setattr(single_channel, name,
                            lambda *args, real=real: (calls.append(1), real(*args))[1])
    yield
    assert calls, "no convolution went by the single-channel path"


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_forward_and_gradients_are_the_direct_convolutions(by_runs, mode, shape, outputs,
                                                             window):
    """Forward, the input gradient (by im2col) and the weight gradient as adjoints, and
    deconvolution's backward (one pass for y and the weight gradient)."""
    check_forward(shape, outputs, window)
    check_adjoints(shape, outputs, window)
    check_deconvolution_backward(shape, outputs, window)


@pytest.mark.parametrize("window,channels,expected", [
    (Window((5, 5)), 1, True),
    (Window((3, 3), (1, 1)), 1, True),
    (Window((5, 5)), 3, False),                       # more channels: im2col's GEMM is long
    (Window((5, 5), (0, 0), (2, 2)), 1, False),       # strided
    (Window((3, 3), (0, 0), (1, 1), (2, 2)), 1, False),   # dilated
])
def test_the_path_takes_one_channel_stride_1_convolutions(window, channels, expected):
    assert single_channel.applies(window, channels) is expected


def test_im2col_only_turns_the_path_off(monkeypatch):
    monkeypatch.setattr(single_channel, "single_channel_forward_kernel",
                        lambda *args: pytest.fail("went by the single-channel path"))
    x, weight, _ = layer_arrays((2, 1, 6, 6), 3, Window((3, 3)))
    y = np.empty((2, 3, 4, 4), np.float32)
    with convolution.im2col_only():
        ops.convolve(x, weight, Window((3, 3)), y=y)


def test_weight_gradients_do_not_depend_on_the_thread_count(by_runs, monkeypatch):
    """Each output channel's gradient is summed by one thread, images in order."""
    check_weight_gradients_do_not_depend_on_the_thread_count(
        monkeypatch, (7, 1, 12, 12), 5, Window((5, 5), (2, 2)))
