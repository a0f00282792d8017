"""Normalisation ops: per-channel statistics and affine maps, LRN across and within channels,
MVN's row normalisation, against numpy on both executors."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import both_modes, in_both_modes, rand, rng


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


@pytest.mark.usefixtures("literal_mode")
def test_lrn_matches_numpy():
    x, size, alpha, beta, k = rand(3, 7, 5), 3, 0.3, 0.75, 2.0
    squares = np.pad(x.astype(np.float64) ** 2, ((0, 0), (1, 1), (0, 0)))
    window = sum(squares[:, i:i + 7] for i in range(size))
    expected_scale = k + alpha / size * window
    scale, out = np.empty_like(x), np.empty_like(x)
    ops.lrn_across_forward(x, size, alpha, beta, k, scale, out)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-5)
    np.testing.assert_allclose(out, x * expected_scale ** -beta, rtol=1e-5)
    dy, dx = rand(*x.shape), np.full_like(x, np.nan)
    ops.lrn_across_backward(x, out, scale, dy, size, alpha, beta, dx)
    ratio = np.pad(dy * out / scale, ((0, 0), (1, 1), (0, 0)))
    window_sum = sum(ratio[:, i:i + 7] for i in range(size))
    expected = dy * scale ** -beta - 2 * alpha * beta / size * x * window_sum
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("centre,spread", [(1000.0, 1.0), (0.3, 1e-3)])
def test_channel_variance_survives_a_far_mean_and_an_outlier_first(centre, spread):
    """One pass (sums of x - K, K the channel's first value) must not cancel away a small
    variance beside a large mean, even when K is ten spreads off."""
    a = (centre + spread * np.random.default_rng(3).standard_normal((4, 3, 3136))).astype(
        np.float32)
    a[0, :, 0] = centre + 10 * spread
    mean, var = both_modes(lambda: ops.channel_mean_var(a))
    wide = a.astype(np.float64)
    np.testing.assert_allclose(mean, wide.mean(axis=(0, 2)), rtol=1e-6, atol=1e-3 * spread)
    np.testing.assert_allclose(var, wide.var(axis=(0, 2)), rtol=1e-4)


@pytest.mark.usefixtures("literal_mode")
def test_channel_statistics_match_numpy():
    a, b = rand(4, 70, 9), rand(4, 70, 9)
    mean, var = ops.channel_mean_var(a)
    np.testing.assert_allclose(mean, a.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, a.var(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    sum_a, sum_ab = ops.channel_sums(a, b)
    np.testing.assert_allclose(sum_a, a.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sum_ab, (a * b).sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 5, 7), (3, 70, 2)])
def test_channel_linear_matches_numpy(shape):
    a, b, out = rand(*shape), rand(*shape), np.empty(shape, np.float32)
    scale, weight, shift = rand(shape[1]), rand(shape[1]), rand(shape[1])
    ops.channel_linear([(a, scale), (b, weight)], out, shift=shift)
    expected = a * scale[None, :, None] + b * weight[None, :, None] + shift[None, :, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    original = a.copy()
    ops.channel_linear([(a, 0.5)], a)          # in place, scalar coefficient
    np.testing.assert_array_equal(a, 0.5 * original)


@pytest.mark.parametrize("shape", [(1, 1), (70, 9), (2, 30_001)])
def test_normalize_rows_matches_numpy(shape):
    x, mean, divisor = rand(*shape), rand(shape[0]), rng.random(shape[0]).astype(np.float32) + 0.5

    def run():
        out = np.full(shape, np.nan, np.float32)
        ops.normalize_rows(x, mean, divisor, out)
        return out
    out, kernels = in_both_modes(run)
    np.testing.assert_array_equal(out, (x - mean[:, None]) / divisor[:, None])
    assert kernels == ["normalize_rows"]


@pytest.mark.parametrize("shape,size", [((1, 1, 1, 1), 1), ((2, 3, 7, 5), 3), ((1, 70, 4, 9), 5)])
def test_lrn_within_channel_matches_numpy(shape, size):
    x, dy, alpha, beta = rand(*shape), rand(*shape), 0.7, 0.75
    pad = (size - 1) // 2
    squares = np.pad(x.astype(np.float64) ** 2, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    window = sum(squares[:, :, i:i + shape[2], j:j + shape[3]]
                 for i in range(size) for j in range(size))
    expected_scale = 1 + alpha * window / size ** 2

    def forward():
        scale, y = np.full_like(x, np.nan), np.full_like(x, np.nan)
        ops.lrn_within_forward(x, size, alpha, beta, scale, y)
        return scale, y
    (scale, y), kernels = in_both_modes(forward)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-5)
    np.testing.assert_allclose(y, x * expected_scale ** -beta, rtol=1e-5)
    assert "power_scaled" in kernels and "ave_pool_forward" in kernels

    def backward():
        dx = np.full_like(x, np.nan)
        ops.lrn_within_backward(x, y, scale, dy, size, alpha, beta, dx)
        return dx
    dx, kernels = in_both_modes(backward)
    # The adjoint of the average pooling (padding counted): spread each d_avg over its window.
    d_avg = np.pad(dy * y * (-alpha * beta) / scale / size ** 2, ((0, 0), (0, 0), (pad, pad),
                                                                  (pad, pad)))
    d_square = sum(d_avg[:, :, i:i + shape[2], j:j + shape[3]]
                   for i in range(size) for j in range(size))
    expected = dy * scale ** -beta + 2 * x * d_square
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-6)
    assert "lrn_within_backward" in kernels and "ave_pool_backward" in kernels


def _relu(v, slope):
    return np.where(v > 0, v, 0) + slope * np.where(v > 0, 0, v)


@pytest.mark.parametrize("slope,with_bias", [(None, True), (0.0, False), (0.2, True)])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 17)])
def test_affine_chain_against_numpy(shape, slope, with_bias):
    x, dy = rand(*shape), rand(*shape)
    coeff, shift, scale, bias = (rand(shape[1]) for _ in range(4))
    k_dz, k_normalized, k_shift = (rand(shape[1]) for _ in range(3))
    per_channel = (1, -1, 1)

    def run():
        normalized, y, dx = np.empty_like(x), x.copy(), dy.copy()
        ops.affine_chain_forward(y, (coeff, shift), (scale, bias if with_bias else None), slope,
                                 normalized, y)            # in place, as in a net
        sums = ops.channel_sums(dy, normalized, *(() if slope is None else (y, slope)))
        ops.affine_chain_backward(y, dx, normalized, slope, (k_dz, k_normalized, k_shift), dx)
        return (normalized, y) + sums + (dx,)
    normalized, y, sum_dz, sum_dz_normalized, dx = both_modes(run)
    expected = x * coeff.reshape(per_channel) + shift.reshape(per_channel)
    np.testing.assert_array_equal(normalized, expected)         # the layers' float32 steps
    affine = expected * scale.reshape(per_channel) + (bias.reshape(per_channel) if with_bias
                                                      else 0)
    y_expected = affine if slope is None else _relu(affine, np.float32(slope))
    np.testing.assert_allclose(y, y_expected, rtol=1e-6, atol=1e-7)
    dz = dy if slope is None else dy * np.where(y > 0, 1, np.float32(slope))
    wide = dz.astype(np.float64)
    np.testing.assert_allclose(sum_dz, wide.sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum_dz_normalized, (wide * normalized).sum(axis=(0, 2)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dz * k_dz.reshape(per_channel)
                               + normalized * k_normalized.reshape(per_channel)
                               + k_shift.reshape(per_channel), rtol=1e-5, atol=1e-6)
