"""Winograd F(2x2, 3x3) convolution: results and gradients equal a direct convolution's on
every executor, the odd sizes and paddings that leave partial tiles, its transforms and the
rule that chooses it."""
import numpy as np
import pytest

from pycaffe_mct.cg.ops import winograd
from pycaffe_mct.cg.ops.convolution import Window
from .conv_helpers import (  # noqa: F401 (mode: a fixture)
    calls_to, check_adjoints, check_deconvolution_backward, check_forward,
    check_weight_gradients_do_not_depend_on_the_thread_count, mode)
from .op_helpers import rand

CASES = [  # x shape, out channels, window
    ((3, 4, 8, 8), 5, Window((3, 3), (1, 1))),       # whole tiles
    ((2, 3, 7, 9), 4, Window((3, 3), (1, 1))),       # odd output: tiles past the edge
    ((2, 5, 6, 5), 3, Window((3, 3))),               # no padding: the input gradient pads 2
    ((3, 2, 5, 6), 6, Window((3, 3), (2, 2))),       # padding 2: the input gradient pads 0
    ((2, 3, 6, 7), 4, Window((3, 3), (1, 0))),       # padding on one axis
    ((2, 4, 7, 6), 6, Window((3, 3), (1, 1), group=2)),   # channel groups
]


@pytest.fixture
def by_winograd(monkeypatch):
    """Small test layers go by Winograd too (and the test fails if they do not)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_OUTPUT_SIDE", 1)
    calls = calls_to(monkeypatch, winograd, ["_input_tiles"])
    yield
    assert calls, "no convolution went by Winograd"


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_winograd_is_the_direct_convolution(by_winograd, mode, shape, outputs, window):
    check_forward(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_winograd_gradients_are_the_adjoints(by_winograd, mode, shape, outputs, window):
    check_adjoints(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES[:2])
def test_winograd_deconvolution_backward(by_winograd, mode, shape, outputs, window):
    check_deconvolution_backward(shape, outputs, window)


def test_weight_gradients_do_not_depend_on_the_thread_count(by_winograd, monkeypatch):
    check_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch)


def test_the_transforms_are_lavin_and_grays_matrices():
    """One tile through the kernels equals A^T [(G g G^T) . (B^T d B)] A with the paper's
    matrices, and the filter gradient's back transform is G^T dU G."""
    b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
    g = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)
    a_t = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
    d, f = rand(1, 1, 4, 4), rand(1, 1, 3, 3)
    inputs = np.zeros((16, 1 + winograd.POSITION_PADDING), np.float32)
    winograd.input_transform_kernel(d, 0, 1, 0, 0, 1, 1, inputs, 0, 1)
    np.testing.assert_allclose(inputs[:, 0], (b_t @ d[0, 0] @ b_t.T).reshape(-1), atol=1e-6)
    filters = np.zeros_like(inputs)
    winograd.filter_transform_kernel(f, False, 1, filters, 0, 1)
    np.testing.assert_allclose(filters[:, 0], (g @ f[0, 0] @ g.T).reshape(-1), atol=1e-6)
    y = np.zeros((1, 1, 2, 2), np.float32)
    winograd.output_transform_kernel(inputs * filters, 1, 1, y, 0, 1, 0, 1)
    expected = a_t @ (inputs[:, 0] * filters[:, 0]).reshape(4, 4) @ a_t.T
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-5, atol=1e-5)
    sums, weight_diff = rand(16, 1 + winograd.POSITION_PADDING), np.ones((1, 1, 3, 3), np.float32)
    winograd.filter_grad_kernel(sums, weight_diff, 0, 1)
    expected = 1 + g.T @ sums[:, 0].reshape(4, 4) @ g
    np.testing.assert_allclose(weight_diff[0, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window,channels,out_hw,expected", [
    (Window((3, 3), (1, 1)), 64, (56, 56), True),
    (Window((3, 3)), 256, (14, 14), True),
    (Window((3, 3), (1, 1)), 32, (16, 16), False),           # too few channels
    (Window((3, 3), (1, 1)), 512, (7, 7), False),            # too small an output
    (Window((3, 3), (1, 1)), 512, (28, 7), False),           # too few columns
    (Window((3, 3), (1, 1)), 384, (13, 13), True),
    (Window((3, 3), (1, 1), (2, 2)), 64, (28, 28), False),   # strided
    (Window((3, 3), (2, 2), (1, 1), (2, 2)), 64, (28, 28), False),     # dilated
    (Window((3, 3), (1, 1), group=2), 128, (28, 28), True),  # 64 channels a group
    (Window((3, 3), (1, 1), group=2), 64, (28, 28), False),  # 32 channels a group
    (Window((3, 3), (3, 3)), 64, (28, 28), False),           # the input gradient's padding < 0
    (Window((5, 5), (2, 2)), 64, (28, 28), False),
])
def test_winograd_takes_3x3_stride_1_convolutions_of_enough_channels(window, channels, out_hw,
                                                                     expected):
    assert winograd.applies(window, channels, channels, out_hw) is expected
