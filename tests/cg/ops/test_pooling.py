"""Max and average pooling against Caffe's formulas, tile by tile and whole, bit-equal on
both executors."""
import math

import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import both_modes, rand


LOWEST = np.float32(-3.4028234663852886e38)


def pooled_size(size, kernel, pad, stride):
    """Caffe's rule: ceil, then drop a window that would start inside the padding."""
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    return pooled - 1 if pad and (pooled - 1) * stride >= size + pad else pooled


def reference_pool(x, kernel, stride, pad):
    """MAX (first maximum, index in plane, -FLT_MAX start) and AVE (padded divisor) by loops."""
    n, c, h, w = x.shape
    out_h, out_w = (pooled_size(s, k, p, st) for s, k, p, st in zip((h, w), kernel, pad, stride))
    maximum = np.full((n, c, out_h, out_w), LOWEST, np.float32)
    argmax = np.full(maximum.shape, -1, np.int32)
    average = np.zeros(maximum.shape, np.float32)
    for oy in range(out_h):
        for ox in range(out_w):
            y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[1]
            area = (min(y0 + kernel[0], h + pad[0]) - y0) * (min(x0 + kernel[1], w + pad[1]) - x0)
            for iy in range(max(y0, 0), min(y0 + kernel[0], h)):
                for ix in range(max(x0, 0), min(x0 + kernel[1], w)):
                    value = x[:, :, iy, ix]
                    wins = value > maximum[:, :, oy, ox]
                    maximum[:, :, oy, ox][wins] = value[wins]
                    argmax[:, :, oy, ox][wins] = iy * w + ix
                    average[:, :, oy, ox] += value
            average[:, :, oy, ox] /= np.float32(area)
    return maximum, argmax, average


def scatter_max_gradient(dy, argmax, shape):
    dx = np.zeros(shape, np.float32)
    planes = dx.reshape(shape[0] * shape[1], -1)
    for plane, (grads, winners) in enumerate(zip(dy.reshape(len(planes), -1),
                                                 argmax.reshape(len(planes), -1))):
        for grad, winner in zip(grads, winners):
            if winner >= 0:
                planes[plane, winner] += grad
    return dx


POOL_CASES = [  # x shape, kernel, stride, pad
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0)),
    ((1, 3, 13, 11), (3, 3), (2, 2), (0, 0)),        # ceil: last windows hang off the image
    ((2, 2, 9, 10), (3, 3), (2, 2), (1, 1)),
    ((1, 2, 7, 17), (2, 3), (1, 2), (1, 0)),
    ((3, 1, 6, 6), (6, 6), (1, 1), (0, 0)),          # global pooling: one output
    ((1, 4, 5, 12), (4, 5), (3, 1), (2, 2)),         # windows 4 and 5 wide, pad 2
]


@pytest.mark.parametrize("shape,kernel,stride,pad", POOL_CASES)
def test_max_pooling_forward_and_backward_are_caffes(shape, kernel, stride, pad):
    x = rand(*shape)
    x[..., ::3] = 0.25                      # ties: the first in the window must win
    expected, expected_argmax, _ = reference_pool(x, kernel, stride, pad)
    dy = rand(*expected.shape)

    def run():
        out = np.full(expected.shape, np.nan, np.float32)
        argmax = np.full(expected.shape, -7, np.int32)
        dx = np.full(shape, np.nan, np.float32)
        ops.max_pool_forward(x, kernel, stride, pad, out, argmax)
        ops.max_pool_backward(dy, argmax, dx)
        return out, argmax, dx
    out, argmax, dx = both_modes(run)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(argmax, expected_argmax)
    np.testing.assert_allclose(dx, scatter_max_gradient(dy, expected_argmax, shape), rtol=1e-6)


def test_max_pooling_needs_a_value_above_lowest_float():
    """A window of -inf (or -FLT_MAX) has no winner: -FLT_MAX out, argmax -1, no gradient."""
    x = np.full((1, 1, 2, 3), -np.inf, np.float32)
    x[0, 0, 1, 2] = 5.0
    out, argmax = np.empty((1, 1, 1, 2), np.float32), np.empty((1, 1, 1, 2), np.int32)
    ops.max_pool_forward(x, (2, 2), (2, 2), (0, 0), out, argmax)
    np.testing.assert_array_equal(out, [[[[LOWEST, 5.0]]]])
    np.testing.assert_array_equal(argmax, [[[[-1, 5]]]])
    dx = np.full(x.shape, np.nan, np.float32)
    ops.max_pool_backward(np.ones(out.shape, np.float32), argmax, dx)
    np.testing.assert_array_equal(dx, [[[[0, 0, 0], [0, 0, 1]]]])


@pytest.mark.parametrize("shape,kernel,stride,pad", POOL_CASES)
def test_ave_pooling_forward_and_backward_are_caffes(shape, kernel, stride, pad):
    x = rand(*shape)
    _, _, expected = reference_pool(x, kernel, stride, pad)
    dy = rand(*expected.shape)

    def run():
        out = np.full(expected.shape, np.nan, np.float32)
        dx = np.full(shape, np.nan, np.float32)
        ops.ave_pool_forward(x, kernel, stride, pad, out)
        ops.ave_pool_backward(dy, kernel, stride, pad, dx)
        return out, dx
    out, dx = both_modes(run)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    # The backward pass is the adjoint of the forward one: <ave(x), dy> == <x, dx>.
    assert float((dx * x).sum()) == pytest.approx(float((out * dy).sum()), rel=1e-5, abs=1e-5)


def windows(x, kernel, stride, out_hw):
    """(N, C, out_h, out_w, kh*kw) windows of x, no padding."""
    n, c = x.shape[:2]
    view = np.empty((n, c) + out_hw + (kernel[0] * kernel[1],), x.dtype)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            patch = x[:, :, oy * stride[0]:oy * stride[0] + kernel[0],
                      ox * stride[1]:ox * stride[1] + kernel[1]]
            view[:, :, oy, ox] = patch.reshape(n, c, -1)
    return view


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape,kernel,stride", [((1, 1, 2, 2), (2, 2), (2, 2)),
                                                 ((2, 5, 9, 7), (3, 2), (2, 3)),
                                                 ((1, 200, 4, 4), (2, 2), (1, 1))])
def test_pooling_matches_numpy(shape, kernel, stride):
    x = rand(*shape)
    out_hw = ((shape[2] - kernel[0]) // stride[0] + 1, (shape[3] - kernel[1]) // stride[1] + 1)
    win = windows(x, kernel, stride, out_hw)
    out = np.empty(shape[:2] + out_hw, np.float32)
    argmax = np.empty(out.shape, np.int32)
    ops.max_pool_forward(x, kernel, stride, (0, 0), out, argmax)
    np.testing.assert_array_equal(out, win.max(axis=-1))
    dy = rand(*out.shape)
    dx = np.full(shape, np.nan, np.float32)
    ops.max_pool_backward(dy, argmax, dx)
    assert float((dx * x).sum()) == pytest.approx(float((dy * out).sum()), rel=1e-4, abs=1e-4)
    ops.ave_pool_forward(x, kernel, stride, (0, 0), out)
    np.testing.assert_allclose(out, win.mean(axis=-1), rtol=1e-5, atol=1e-6)
    ops.ave_pool_backward(dy, kernel, stride, (0, 0), dx)
    expected = (windows(x, kernel, stride, out_hw).mean(axis=-1) * dy).sum()
    assert float((dx * x).sum()) == pytest.approx(float(expected), rel=1e-4, abs=1e-4)
