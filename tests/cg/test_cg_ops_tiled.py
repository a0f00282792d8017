"""Every op run tile by tile (the scheduler's literal mode) equals a direct numpy computation.

Shapes are awkward on purpose: not multiples of 8, 1x1, K much larger than M*N,
batch 1, many channels.
"""
import numpy as np
import pytest

from pycaffe_mct.cg import ops, scheduler

rng = np.random.default_rng(4)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture(autouse=True)
def literal_mode():
    with scheduler.execution("literal"):
        yield


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (9, 2, 3000), (130, 17, 33),
                                   (1, 300, 10), (70, 1, 5)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_matches_numpy(m, n, k, trans_a, trans_b):
    a = rand(k, m) if trans_a else rand(m, k)
    b = rand(n, k) if trans_b else rand(k, n)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_gemm_alpha_beta_accumulate():
    a, b, c = rand(11, 13), rand(13, 9), rand(11, 9)
    out = c.copy()
    ops.gemm(a, b, alpha=0.5, beta=2.0, out=out)
    np.testing.assert_allclose(out, 0.5 * (a @ b) + 2.0 * c, rtol=1e-5, atol=1e-5)


def reference_im2col(x, kernel, pad, stride, dilation):
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out_h = ops.conv_out_size(h, kernel[0], pad[0], stride[0], dilation[0])
    out_w = ops.conv_out_size(w, kernel[1], pad[1], stride[1], dilation[1])
    cols = np.empty((c, kernel[0], kernel[1], n, out_h, out_w), np.float32)
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            y0, x0 = ki * dilation[0], kj * dilation[1]
            window = padded[:, :, y0:y0 + stride[0] * out_h:stride[0],
                            x0:x0 + stride[1] * out_w:stride[1]]
            cols[:, ki, kj] = window.transpose(1, 0, 2, 3)
    return cols.reshape(c * kernel[0] * kernel[1], n * out_h * out_w)


CONV_CASES = [  # x shape, kernel, pad, stride, dilation
    ((1, 1, 1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),
    ((2, 3, 7, 9), (3, 2), (1, 0), (2, 1), (1, 1)),
    ((1, 300, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 2, 11, 10), (3, 3), (2, 2), (1, 3), (2, 2)),
]


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CONV_CASES)
def test_im2col_matches_numpy(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    expected = reference_im2col(x, kernel, pad, stride, dilation)
    cols = np.full(expected.shape, np.nan, np.float32)
    ops.im2col(x, kernel, pad, stride, dilation, cols)
    np.testing.assert_array_equal(cols, expected)


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, pad, stride, dilation):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: checked for random ones."""
    x = rand(*shape)
    cols = rand(*reference_im2col(x, kernel, pad, stride, dilation).shape)
    dx = np.full(shape, np.nan, np.float32)
    ops.col2im(cols, kernel, pad, stride, dilation, dx)
    left = float((reference_im2col(x, kernel, pad, stride, dilation) * cols).sum(dtype=np.float64))
    assert float((x * dx).sum(dtype=np.float64)) == pytest.approx(left, rel=1e-4, abs=1e-3)


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


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 10, 1), (70, 7, 3)])
def test_softmax_matches_numpy(shape):
    x = rand(*shape) * 10
    out = np.full(shape, np.nan, np.float32)
    ops.softmax_forward(x, out)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    dy, dx = rand(*shape), np.full(shape, np.nan, np.float32)
    ops.softmax_backward(out, dy, dx)
    expected = (dy - (dy * out).sum(axis=1, keepdims=True)) * out
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-6)


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


def test_channel_statistics_match_numpy():
    a, b = rand(4, 70, 9), rand(4, 70, 9)
    mean, var = ops.channel_mean_var(a)
    np.testing.assert_allclose(mean, a.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, a.var(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    sum_a, sum_ab = ops.channel_sums(a, b)
    np.testing.assert_allclose(sum_a, a.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sum_ab, (a * b).sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


def test_crop_with_offsets_on_every_axis():
    x, offsets = rand(70, 3, 6), (5, 1, 2)
    out = np.full((40, 2, 3), np.nan, np.float32)
    ops.crop_forward(x, offsets, out)
    np.testing.assert_array_equal(out, x[5:45, 1:3, 2:5])
    dx = np.full_like(x, np.nan)
    ops.crop_backward(out, offsets, dx)
    expected = np.zeros_like(x)
    expected[5:45, 1:3, 2:5] = out
    np.testing.assert_array_equal(dx, expected)


def test_channel_bias_forward_and_gradient():
    y, bias = rand(5, 70, 3), rand(70)
    expected = y + bias[None, :, None]
    ops.add_channel_bias(y, bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    grad = np.ones(70, np.float32)
    ops.accumulate_channel_bias_grad(y, grad)
    np.testing.assert_allclose(grad, 1 + expected.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


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


def test_copy_and_product_match_numpy():
    x, y, z = rand(3, 5, 7), rand(3, 5, 7), rand(3, 5, 7)
    copied, product, quotient = (np.empty_like(x) for _ in range(3))
    ops.copy_into(x, copied)
    ops.product_into([x, y, z], product)
    ops.product_into([x, y], quotient, divisor=z)
    np.testing.assert_array_equal(copied, x)
    np.testing.assert_allclose(product, x * y * z, rtol=1e-6)
    np.testing.assert_allclose(quotient, x * y / z, rtol=1e-5)


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


def test_weighted_difference_and_dot_match_numpy():
    a, b, mask = rand(3, 5, 7), rand(3, 5, 7), rng.random((3, 5, 7)) < 0.5
    plain, masked = np.empty_like(a), np.empty_like(a)
    ops.weighted_difference(a, b, plain)
    ops.weighted_difference(a, b, masked, scale=0.25, weights=mask)
    np.testing.assert_array_equal(plain, a - b)
    np.testing.assert_allclose(masked, (a - b) * mask * 0.25, rtol=1e-6)
    np.testing.assert_allclose(ops.dot(a, b), np.sum(a.astype(np.float64) * b), rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1), (70, 10, 1), (3, 4, 5)])
def test_label_gradient_matches_numpy(shape):
    outer, channels, inner = shape
    prob = rand(*shape)
    labels = rng.integers(0, channels, (outer, inner))
    weights = rng.random((outer, inner)).astype(np.float32)
    out = np.empty_like(prob)
    ops.label_gradient(prob, labels, weights, 0.5, out)
    one_hot = np.arange(channels)[None, :, None] == labels[:, None, :]
    np.testing.assert_allclose(out, (prob - one_hot) * weights[:, None, :] * 0.5, rtol=1e-6)


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
    ops._FORMULAS[formula][1](*inputs, whole, **constants)
    np.testing.assert_array_equal(tiled, whole)
    assert np.isfinite(whole).all()
