"""The flat-offset kernels (pooling, ReLU, softmax, LRN, channel statistics and affine maps)
on awkward shapes, in both execution modes, against independent numpy references.

Shapes: widths that are not multiples of 8, 1x1 planes, batch 1, padded and
ceil-rounded windows.  Where Caffe's numerics are exact (MAX pooling, ReLU,
the affine map) the comparison is exact; fast and literal mode must agree
bit for bit everywhere, since both run the same per-unit code.
"""
import math

import numpy as np
import pytest

from pycaffe_mct.cg import ops, scheduler

rng = np.random.default_rng(11)
LOWEST = np.float32(-3.4028234663852886e38)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def both_modes(run):
    """run() in fast and in literal mode; asserts equal results and returns one."""
    with scheduler.execution("fast"):
        fast = run()
    with scheduler.execution("literal"):
        literal = run()
    for a, b in zip(fast, literal):
        np.testing.assert_array_equal(a, b)
    return fast


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


@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_relu_is_caffes_formula_including_nan_and_signed_zero(slope):
    x = rand(1003)
    x[:4] = [0.0, -0.0, np.nan, -np.inf]
    dy = rand(1003)
    s = np.float32(slope)

    def run():
        out, dx = np.empty_like(x), np.empty_like(x)
        ops.relu_forward(x, slope, out)
        ops.relu_backward(x, dy, slope, dx)
        return out, dx
    out, dx = both_modes(run)
    with np.errstate(invalid="ignore"):
        expected = np.maximum(x, 0) + s * np.minimum(x, 0)
        expected_dx = dy * ((x > 0) + s * (x <= 0))
    np.testing.assert_array_equal(out, expected)
    if not slope:       # negative numbers give +0 (not -0); -inf gives Caffe's 0 * -inf = NaN
        assert not np.signbit(out[np.isfinite(x) & (x < 0)]).any()
        assert np.isnan(out[3])
    np.testing.assert_array_equal(dx, expected_dx)
    in_place = dy.copy()
    ops.relu_backward(x, in_place, slope, in_place)          # dx may alias dy
    np.testing.assert_array_equal(in_place, expected_dx)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 13), (4, 1000, 1), (2, 3, 37)])
def test_softmax_along_inner_rows(shape):
    x = rand(*shape) * 10
    dy = rand(*shape)

    def run():
        out, dx = np.empty_like(x), np.empty_like(x)
        ops.softmax_forward(x, out)
        ops.softmax_backward(out, dy, dx)
        return out, dx
    out, dx = both_modes(run)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dx, (dy - (dy * out).sum(axis=1, keepdims=True)) * out,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape,size", [((1, 1, 1), 1), ((1, 4, 13), 5), ((2, 9, 3), 3)])
def test_lrn_across_channels_on_awkward_shapes(shape, size):
    x, dy, alpha, beta, k = rand(*shape), rand(*shape), 0.7, 0.75, 1.5
    pre = (size - 1) // 2
    padded = np.pad(x.astype(np.float64) ** 2, ((0, 0), (pre, size - 1 - pre), (0, 0)))
    expected_scale = k + alpha / size * sum(padded[:, i:i + shape[1]] for i in range(size))

    def run():
        scale, out, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        ops.lrn_across_forward(x, size, alpha, beta, k, scale, out)
        ops.lrn_across_backward(x, out, scale, dy, size, alpha, beta, dx)
        return scale, out, dx
    scale, out, dx = both_modes(run)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-5)
    np.testing.assert_allclose(out, x * expected_scale ** -beta, rtol=1e-5)
    ratio = np.pad(dy * out / scale, ((0, 0), (size - 1 - pre, pre), (0, 0)))
    window = sum(ratio[:, i:i + shape[1]] for i in range(size))
    expected_dx = dy * expected_scale ** -beta - 2 * alpha * beta / size * x * window
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 1), (5, 2, 19), (2, 70, 33)])
def test_channel_statistics_on_awkward_shapes(shape):
    a, b = rand(*shape) + 3, rand(*shape)
    mean, var, sum_a, sum_ab = both_modes(lambda: ops.channel_mean_var(a) + ops.channel_sums(a, b))
    wide = a.astype(np.float64)
    np.testing.assert_allclose(mean, wide.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(var, wide.var(axis=(0, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sum_a, wide.sum(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(sum_ab, (wide * b).sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("terms", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 13)])
def test_channel_linear_is_numpys_float32_sum_in_order(terms, shape):
    arrays = [rand(*shape) for _ in range(terms)]
    coeffs = [rand(shape[1]) for _ in range(terms - 1)] + [np.float32(0.5)]
    shift = rand(shape[1])

    def run():
        out = np.empty(shape, np.float32)
        ops.channel_linear(list(zip(arrays, coeffs)), out, shift=shift)
        return (out,)
    (out,) = both_modes(run)
    per_channel = [np.reshape(c, (1, -1, 1)) if np.ndim(c) else c for c in coeffs]
    expected = arrays[0] * per_channel[0]
    for array, coeff in zip(arrays[1:], per_channel[1:]):
        expected += array * coeff
    expected += shift.reshape(1, -1, 1)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("size", [1, 4097, 9000])       # around the kernel's 4096 block
@pytest.mark.parametrize("coeffs", [None, [0.5, -2.0, 1.0]])
def test_sum_into_is_numpys_float32_sum_in_order(size, coeffs):
    arrays = [rand(size) for _ in range(3)]
    factors = coeffs or [1.0] * 3

    def run():
        out = np.empty(size, np.float32)
        ops.sum_into(arrays, out, coeffs)
        return (out,)
    (out,) = both_modes(run)
    expected = arrays[0] * np.float32(factors[0])
    for array, coeff in zip(arrays[1:], factors[1:]):
        expected += array * np.float32(coeff)
    np.testing.assert_array_equal(out, expected)


def test_scale_into_by_a_scalar_is_the_float32_product():
    x = rand(5003)

    def run():
        out = np.empty_like(x)
        ops.scale_into(x, np.float32(-0.3), out)
        return (out,)
    (out,) = both_modes(run)
    np.testing.assert_array_equal(out, x * np.float32(-0.3))
