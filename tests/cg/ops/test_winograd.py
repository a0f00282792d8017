"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution: results and gradients equal a direct
convolution's on every executor, the odd sizes and paddings that leave partial tiles, the
transforms and the rule that chooses a tiling."""
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


@pytest.fixture(params=["F2", "F4"])
def by_winograd(request, monkeypatch):
    """Small test layers go by Winograd too, in the tiling of the parameter (and the test
    fails if they do not)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_OUTPUT_SIDE", 1)
    monkeypatch.setattr(winograd, "F4_MIN_TILES", 0 if request.param == "F4" else 1 << 30)
    monkeypatch.setattr(winograd, "F4_MAX_WASTE", 1e9)
    tilings = []
    monkeypatch.setattr(winograd, "_input_tiles", lambda tiling, *args, real=winograd._input_tiles: (
        tilings.append(tiling), real(tiling, *args))[1])
    yield
    assert tilings, "no convolution went by Winograd"
    assert set(tilings) == {getattr(winograd, request.param)}


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


# Lavin and Gray's matrices (B^T, G, A^T) of each tiling, in float64.
MATRICES = {
    "F2": ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
           [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
           [[1, 1, 1, 0], [0, 1, -1, -1]]),
    "F4": ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
           [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
           [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_the_transforms_are_lavin_and_grays_matrices(name):
    """One tile through each kernel equals the paper's matrix products: V = B^T d B,
    U = G g G^T, y = A^T (U . V) A, the top gradient's A dY A^T and the filter
    gradient's back transform G^T dU G."""
    tiling = getattr(winograd, name)
    b_t, g, a_t = (np.array(m, np.float64) for m in MATRICES[name])
    side, out, positions = tiling.side, tiling.out, tiling.positions
    d, f = rand(1, 1, side, side), rand(1, 1, 3, 3)
    inputs = np.zeros((positions, 1 + winograd.POSITION_PADDING), np.float32)
    winograd.input_transform_kernel(d, 0, 1, 0, 0, 1, 1, side, inputs, 0, 1)
    np.testing.assert_allclose(inputs[:, 0], (b_t @ d[0, 0] @ b_t.T).reshape(-1), atol=1e-5)
    filters = np.zeros_like(inputs)
    winograd.filter_transform_kernel(f, False, 1, side, filters, 0, 1)
    np.testing.assert_allclose(filters[:, 0], (g @ f[0, 0] @ g.T).reshape(-1), atol=1e-6)
    y = np.zeros((1, 1, out, out), np.float32)
    winograd.output_transform_kernel(inputs * filters, 1, 1, side, y, 0, 1, 0, 1)
    expected = a_t @ (inputs[:, 0] * filters[:, 0]).reshape(side, side) @ a_t.T
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-5, atol=1e-5)
    dy, gradients = rand(1, 1, out, out), np.zeros_like(inputs)
    winograd.gradient_transform_kernel(dy, 0, 1, 1, 1, side, gradients, 0, 1)
    np.testing.assert_allclose(gradients[:, 0], (a_t.T @ dy[0, 0] @ a_t).reshape(-1),
                               rtol=1e-5, atol=1e-5)
    sums, weight_diff = rand(positions, 1 + winograd.POSITION_PADDING), np.ones((1, 1, 3, 3),
                                                                               np.float32)
    winograd.filter_grad_kernel(sums, side, weight_diff, 0, 1)
    expected = 1 + g.T @ sums[:, 0].reshape(side, side) @ g
    np.testing.assert_allclose(weight_diff[0, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window,channels,out_hw,images,expected", [
    (Window((3, 3), (1, 1)), 64, (56, 56), 2, "F4"),           # 196 tiles of 4x4 an image
    (Window((3, 3), (1, 1)), 128, (28, 28), 8, "F4"),          # 392
    (Window((3, 3), (1, 1)), 128, (28, 28), 5, "F2"),          # 245: too few
    (Window((3, 3)), 256, (14, 14), 8, "F2"),                  # 128
    (Window((3, 3)), 256, (14, 14), 16, "F4"),                 # 256
    (Window((3, 3), (1, 1)), 384, (13, 13), 16, "F2"),         # 256, but 16x16 computed
    (Window((3, 3), (1, 1)), 64, (12, 12), 32, "F4"),          # whole tiles
    (Window((3, 3), (1, 1)), 32, (16, 16), 64, None),          # too few channels
    (Window((3, 3), (1, 1)), 512, (7, 7), 64, None),           # too small an output
    (Window((3, 3), (1, 1)), 512, (28, 7), 8, None),           # too few columns
    (Window((3, 3), (1, 1), (2, 2)), 64, (28, 28), 8, None),   # strided
    (Window((3, 3), (2, 2), (1, 1), (2, 2)), 64, (28, 28), 8, None),     # dilated
    (Window((3, 3), (1, 1), group=2), 128, (28, 28), 1, "F2"),  # 64 channels a group
    (Window((3, 3), (1, 1), group=2), 64, (28, 28), 8, None),  # 32 channels a group
    (Window((3, 3), (3, 3)), 64, (28, 28), 8, None),           # the input gradient's pad < 0
    (Window((5, 5), (2, 2)), 64, (28, 28), 8, None),
])
def test_winograd_takes_3x3_stride_1_convolutions_of_enough_channels(window, channels, out_hw,
                                                                     images, expected):
    tiling = winograd.tiling(window, channels, channels, out_hw, images)
    assert tiling is (expected and getattr(winograd, expected))
