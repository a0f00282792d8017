"""Fine planning units: im2col by (row, image) segment, col2im by (channel, image) plane and
the bias gradient by (image, channel) partial sums.  Tile by tile (literal) equals the
whole-array run (fast) and numpy, also when tiles split a row's images, and a small layer's
plan now spreads over the whole mesh."""
import numpy as np
import pytest

from test_cg_ops_tiled import reference_im2col
from test_cg_reduce import in_both_modes
from pycaffe_mct.cg import convolution, ops

rng = np.random.default_rng(8)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("images", [1, 3, 5])
def test_unit_blocks_cover_each_unit_once_in_order(images):
    for lo in range(0, 4 * images + 1):
        for hi in range(lo, 4 * images + 1):
            units = [outer * images + n
                     for outer_lo, outer_hi, n_lo, n_hi in convolution._unit_blocks(lo, hi, images)
                     for outer in range(outer_lo, outer_hi) for n in range(n_lo, n_hi)]
            assert units == list(range(lo, hi))


CASES = [  # x shape, kernel, pad, stride, dilation: tiles end inside a row's images
    ((7, 3, 6, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((5, 2, 9, 8), (2, 3), (1, 0), (2, 1), (1, 2)),
    ((1, 1, 1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CASES)
def test_im2col_by_row_and_image(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    expected = reference_im2col(x, kernel, pad, stride, dilation)

    def run():
        cols = np.full(expected.shape, np.nan, np.float32)
        ops.im2col(x, kernel, pad, stride, dilation, cols)
        return cols
    cols, kernels = in_both_modes(run)
    np.testing.assert_array_equal(cols, expected)
    assert kernels == ["im2col"]


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CASES)
def test_col2im_by_channel_and_image(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    cols = rand(*reference_im2col(x, kernel, pad, stride, dilation).shape)

    def run():
        dx = np.full(shape, np.nan, np.float32)
        ops.col2im(cols, kernel, pad, stride, dilation, dx)
        return dx
    dx, kernels = in_both_modes(run)
    # The adjoint of im2col: <im2col(x), cols> == <x, col2im(cols)>.
    left = float((reference_im2col(x, kernel, pad, stride, dilation) * cols).sum(dtype=np.float64))
    assert float((x * dx).sum(dtype=np.float64)) == pytest.approx(left, rel=1e-4, abs=1e-3)
    assert kernels == ["col2im"]


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 70, 2), (9, 5, 13), (64, 20, 1)])
def test_bias_gradient_by_partial_sums(shape):
    dy = rand(*shape)
    start = rand(shape[1])

    def run():
        grad = start.copy()
        ops.accumulate_channel_bias_grad(dy, grad)
        return grad
    grad, kernels = in_both_modes(run)
    np.testing.assert_allclose(grad, start + dy.astype(np.float64).sum(axis=(0, 2)),
                               rtol=1e-5, atol=1e-5)
    assert kernels == ["bias_backward", "bias_backward_reduce"]


def test_lenet_conv1_unfolding_and_bias_gradient_use_the_whole_mesh():
    """conv1: 25 column rows and 20 channels were 25 and 20 units for 64 CPEs."""
    x, dy = rand(64, 1, 28, 28), rand(64, 20, 576)
    cols = np.empty((25, 64 * 576), np.float32)
    with ops.scheduler.execution("literal"), ops.scheduler.accounting.recording() as plans:
        ops.im2col(x, (5, 5), (0, 0), (1, 1), (1, 1), cols)
        ops.accumulate_channel_bias_grad(dy, np.zeros(20, np.float32))
    imbalance = {plan.kernel: plan.imbalance() for plan in plans}
    assert imbalance["im2col"] < 1.05
    assert imbalance["bias_backward"] < 1.05
