"""Element-wise ops: ReLU, the named formulas, weighted sums, products, maxima, dot, fill,
Dropout's mask, against numpy on both executors."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops, scheduler
from pycaffe_mct.cg.ops import elementwise
from .op_helpers import both_modes, in_both_modes, rand, rng


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


@pytest.mark.usefixtures("literal_mode")
def test_elementwise_maps_match_numpy():
    x, dy = rand(50_000), rand(50_000)         # many tiles
    out = np.full_like(x, np.nan)
    ops.relu_forward(x, 0.1, out)
    np.testing.assert_array_equal(out, np.where(x > 0, x, np.float32(0.1) * x))
    ops.relu_backward(x, dy, 0.0, out)
    np.testing.assert_array_equal(out, np.where(x > 0, dy, 0))
    ops.tanh_forward(x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-6)
    ops.sigmoid_forward(x, out)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-5)
    factor = rand(1, 10)
    ops.scale_into(x.reshape(5000, 10), factor, out.reshape(5000, 10))
    np.testing.assert_array_equal(out.reshape(5000, 10), x.reshape(5000, 10) * factor)
    ops.sum_into([x, dy, x], out, [1.0, 2.0, -1.0])
    np.testing.assert_allclose(out, 2 * dy, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("literal_mode")
def test_copy_and_product_match_numpy():
    x, y, z = rand(3, 5, 7), rand(3, 5, 7), rand(3, 5, 7)
    copied, product, quotient = (np.empty_like(x) for _ in range(3))
    ops.copy_into(x, copied)
    ops.product_into([x, y, z], product)
    ops.product_into([x, y], quotient, divisor=z)
    np.testing.assert_array_equal(copied, x)
    np.testing.assert_allclose(product, x * y * z, rtol=1e-6)
    np.testing.assert_allclose(quotient, x * y / z, rtol=1e-5)


@pytest.mark.usefixtures("literal_mode")
def test_max_and_select_match_numpy():
    arrays = [rand(2, 9, 5) for _ in range(3)]
    arrays[2][0, 0, 0] = arrays[1][0, 0, 0] = 9.0       # a tie goes to the earlier array
    out, argmax = np.empty_like(arrays[0]), np.empty(arrays[0].shape, np.int32)
    ops.max_into(arrays, out, argmax)
    np.testing.assert_array_equal(out, np.max(arrays, axis=0))
    np.testing.assert_array_equal(argmax, np.argmax(arrays, axis=0))
    dy, dx = rand(2, 9, 5), np.empty_like(out)
    ops.select_into(dy, argmax, 1, dx)
    np.testing.assert_array_equal(dx, np.where(np.argmax(arrays, axis=0) == 1, dy, 0))


@pytest.mark.usefixtures("literal_mode")
def test_weighted_difference_and_dot_match_numpy():
    a, b, mask = rand(3, 5, 7), rand(3, 5, 7), rng.random((3, 5, 7)) < 0.5
    plain, masked = np.empty_like(a), np.empty_like(a)
    ops.weighted_difference(a, b, plain)
    ops.weighted_difference(a, b, masked, scale=0.25, weights=mask)
    np.testing.assert_array_equal(plain, a - b)
    np.testing.assert_allclose(masked, (a - b) * mask * 0.25, rtol=1e-6)
    np.testing.assert_allclose(ops.dot(a, b), np.sum(a.astype(np.float64) * b), rtol=1e-5)


POINTWISE_CASES = {  # formula: (number of array inputs, constants)
    "abs": (1, {}), "abs_backward": (2, {}), "elu": (1, {"alpha": 0.7}),
    "elu_backward": (2, {"alpha": 0.7}),
    "power": (1, {"shift": 3.0, "scale": 0.5, "power": 1.5}),
    "power_backward": (2, {"shift": 3.0, "scale": 0.5, "gain": 0.75, "exponent": 0.5}),
    "exp": (1, {"shift": 0.1, "scale": 0.5}), "exp_backward": (2, {"scale": 0.5}),
    "log": (1, {"shift": 3.0, "scale": 0.5, "factor": 0.4}),
    "log_backward": (2, {"shift": 3.0, "scale": 0.5, "factor": 0.4}),
    "bnll": (1, {}), "threshold": (1, {"threshold": 0.2}),
    "clip": (1, {"low": -0.5, "high": 0.3}), "clip_backward": (2, {"low": -0.5, "high": 0.3}),
    "prelu": (2, {}), "prelu_backward": (3, {}), "negative_part": (1, {}),
    "swish_backward": (3, {"beta": 1.5}), "sigmoid_cross_entropy": (2, {}),
}


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("formula", sorted(POINTWISE_CASES))
def test_pointwise_tiles_match_the_whole_array_formula(formula):
    """Run tile by tile, every formula equals numpy on whole arrays (slopes broadcast)."""
    count, constants = POINTWISE_CASES[formula]
    constants = {name: np.float32(value) for name, value in constants.items()}
    inputs = [rand(3, 70, 5) for _ in range(count)]
    if formula.startswith("prelu"):
        inputs[1] = rand(1, 70, 1)
    tiled = np.empty((3, 70, 5), np.float32)
    ops.pointwise(formula, tiled, *inputs, **constants)
    whole = np.empty_like(tiled)
    elementwise._FORMULAS[formula][1](*inputs, whole, **constants)
    np.testing.assert_array_equal(tiled, whole)
    assert np.isfinite(whole).all()


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 300_000)])     # the second spread
def test_fill(shape, monkeypatch):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", scheduler.HostThreads(3))

    def run():
        out = np.full(shape, np.nan, np.float32)
        ops.fill(out, -2.5)
        return out
    out, kernels = in_both_modes(run)
    assert (out == np.float32(-2.5)).all()
    assert kernels == ["fill"]


def test_dropout_mask():
    draws = rng.random((5, 13), dtype=np.float32)

    def run():
        mask = np.empty_like(draws)
        ops.pointwise("dropout_mask", mask, draws, ratio=np.float32(0.3),
                      scale=np.float32(1 / 0.7))
        return mask
    mask, kernels = in_both_modes(run)
    np.testing.assert_array_equal(mask, (draws >= np.float32(0.3)) * np.float32(1 / 0.7))
    assert kernels == ["dropout_mask"]
