"""Normalisation: the per-channel affine map (BatchNorm, Scale), per-channel
statistics, LRN across and within channels, MVN's row normalisation.

Arrays are viewed as (N, C, S) with S the flattened spatial extent; loops run
along S (contiguous).  Statistics accumulate in float64 so that a 56x56x32
channel reduction keeps float32 accuracy; their loops may reassociate those
sums (``fastmath`` reassoc only: NaN and infinity keep their meaning), which is
what lets them vectorise.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U
from .elementwise import pointwise, product_into, relu_gradient, relu_value
from .pooling import ave_pool_backward, ave_pool_forward


def channel_linear(terms, out, shift=None):
    """out = sum of coeff[c] * array over ``terms`` (array, coeff) pairs, plus shift[c].

    Arrays and out are (outer, C, inner); coefficients and shift are scalars or
    (C,) arrays.  This is the per-channel affine map of BatchNorm and Scale and
    the combination of their gradients.  out may alias the first term's array.
    """
    outer, channels, inner = out.shape
    rows = outer * channels
    target_rows = out.reshape(rows, inner)
    arrays = tuple(np.ascontiguousarray(array.reshape(rows, inner), np.float32)
                   for array, _ in terms)
    coeffs = np.stack([_per_row(coeff, outer, channels) for _, coeff in terms])
    shifts = np.empty(0, np.float32) if shift is None else _per_row(shift, outer, channels)
    per_channel = len(terms) + (shift is not None)
    # Unit: one (outer, channel) row with its coefficients.
    scheduler.units("channel_linear", rows, (len(terms) * inner + per_channel) * out.itemsize,
                    inner * out.itemsize, (2 * per_channel - 1) * inner,
                    lambda lo, hi: channel_linear_kernel(arrays, coeffs, shifts, target_rows,
                                                         lo, hi))


def _per_row(coeff, outer, channels):
    """A scalar or (C,) coefficient as an (outer * C,) array: one entry per row."""
    column = np.asarray(coeff, np.float32).reshape(-1)
    return np.broadcast_to(column, (outer, channels)).reshape(-1)


def lrn_across_forward(x, size, alpha, beta, k, scale, out):
    """Caffe's ACROSS_CHANNELS LRN of x viewed (N, C, S); scale keeps k + alpha/size*sum."""
    column = x.shape[0] * x.shape[1]      # unit: one pixel, all images and channels
    scheduler.units("lrn_forward", x.shape[2], column * x.itemsize, 2 * column * out.itemsize,
                    (2 * size + 4) * column,
                    lambda lo, hi: _lrn_forward_pixels(x, size, alpha, beta, k, scale, out,
                                                       lo, hi))


def _lrn_forward_pixels(x, size, alpha, beta, k, scale, out, lo, hi):
    """LRN of pixels lo..hi: the window sums in numba, the power in numpy (see lrn_scale)."""
    lrn_scale_kernel(x, size, alpha, k, scale, lo, hi)
    np.power(scale[:, :, lo:hi], np.float32(-beta), out=out[:, :, lo:hi])
    out[:, :, lo:hi] *= x[:, :, lo:hi]


def lrn_across_backward(x, y, scale, dy, size, alpha, beta, dx):
    """dx of ACROSS_CHANNELS LRN; dx must not alias dy."""
    column = x.shape[0] * x.shape[1]      # unit: one pixel, all images and channels
    scheduler.units("lrn_backward", x.shape[2], 4 * column * x.itemsize, column * dx.itemsize,
                    (3 * size + 6) * column,
                    lambda lo, hi: lrn_across_backward_kernel(
                        x, y, scale, dy, size, alpha, beta,
                        _power_into(scale, -beta, dx, lo, hi), lo, hi))


def _power_into(x, exponent, out, lo, hi):
    """out[:, :, lo:hi] = x[:, :, lo:hi] ** exponent (float32, numpy's vectorised power)."""
    np.power(x[:, :, lo:hi], np.float32(exponent), out=out[:, :, lo:hi])
    return out


def channel_mean_var(x):
    """Per-channel mean and biased variance of x (N, C, S), as float32 (C,) arrays."""
    mean = np.empty(x.shape[1], np.float32)
    var = np.empty(x.shape[1], np.float32)
    _per_channel("channel_mean_var", x.shape, 1, 3,
                 lambda lo, hi: channel_mean_var_kernel(x, mean, var, lo, hi))
    return mean, var


def channel_sums(a, b, relu_output=None, slope=0.0):
    """Per-channel sums of a and a*b over axes 0 and 2 of (N, C, S) arrays.

    With ``relu_output`` (a ReLU's output y, of the same shape) a is first taken
    through that ReLU's gradient: a * ((y > 0) + slope * (y <= 0)).
    """
    sum_a = np.empty(a.shape[1], np.float32)
    sum_ab = np.empty(a.shape[1], np.float32)
    gate = np.empty((0, 0, 0), np.float32) if relu_output is None else relu_output
    _per_channel("channel_sums", a.shape, 2 + (relu_output is not None), 3,
                 lambda lo, hi: channel_sums_kernel(a, b, gate, np.float32(slope), sum_a, sum_ab,
                                                    lo, hi))
    return sum_a, sum_ab


def _per_channel(kernel_name, shape, arrays, flops, run):
    """A reduction whose unit is one channel of ``arrays`` (N, C, S) float32 inputs."""
    n_img, channels, plane = shape
    scheduler.units(kernel_name, channels, arrays * n_img * plane * 4, 2 * 4,
                    flops * n_img * plane, run)


def lrn_within_forward(x, size, alpha, beta, scale, out):
    """WITHIN_CHANNEL LRN of x (N, C, H, W): scale = 1 + alpha * the size x size average
    (padded cells counted) of x^2, out = x * scale^-beta."""
    pad = (size - 1) // 2
    product_into([x, x], out)                          # out holds x^2 until the last step
    ave_pool_forward(out, (size, size), (1, 1), (pad, pad), scale)
    planes = scale.reshape(-1, 1, x.shape[2] * x.shape[3])
    channel_linear([(planes, alpha)], planes, shift=1.0)
    pointwise("power_scaled", out, x, scale, exponent=np.float32(-beta))


def lrn_within_backward(x, y, scale, dy, size, alpha, beta, dx):
    """dx of ``lrn_within_forward``: through x^-beta directly and through the pooled squares.

    dx must not alias dy.
    """
    pad = (size - 1) // 2
    # d/d(average) of x * (1 + alpha * average)^-beta, into dx as scratch.
    pointwise("ratio_product", dx, dy, y, scale, factor=np.float32(-alpha * beta))
    d_square = np.empty_like(x)
    ave_pool_backward(dx, (size, size), (1, 1), (pad, pad), d_square)
    pointwise("lrn_within_backward", dx, dy, scale, x, d_square, beta=np.float32(beta))


def normalize_rows(x, mean, divisor, out):
    """out = (x - mean[r]) / divisor[r] over each row r of x (rows, length); out may alias x."""
    rows, length = x.shape
    x_flat, out_flat = x.reshape(-1), out.reshape(-1)
    scheduler.units("normalize_rows", rows, (length + 2) * x.itemsize, length * out.itemsize,
                    2 * length,
                    lambda lo, hi: normalize_rows_kernel(
                        x_flat, mean, divisor, length, out_flat, lo, hi))


@numba.njit(parallel=True, **JIT)
def channel_linear_kernel(arrays, coeffs, shift, out, lo, hi):
    """Rows lo..hi of out (rows, inner) = sum_t coeffs[t, row] * arrays[t] (+ shift[row]).

    The terms add in order in float32, as numpy's ``out = a0*c0; out += a1*c1``
    does; ``shift`` of length 0 means none.  out may be arrays[0].
    """
    inner = U(out.shape[1])
    dst = out.reshape(-1)
    for row in numba.prange(lo, hi):
        start = U(row) * inner
        first, coeff = arrays[0].reshape(-1), coeffs[0, row]
        for i in range(inner):
            dst[start + i] = first[start + i] * coeff
        for term in range(1, len(arrays)):
            src, coeff = arrays[term].reshape(-1), coeffs[term, row]
            for i in range(inner):
                dst[start + i] += src[start + i] * coeff
        if shift.size:
            offset = shift[row]
            for i in range(inner):
                dst[start + i] += offset


_SUMS = dict(JIT, fastmath={"reassoc"})


@numba.njit(parallel=True, **JIT)
def lrn_scale_kernel(x, size, alpha, k, scale, lo, hi):
    """scale = k + alpha/size * (sum of x^2 over the channel window), pixels lo..hi.

    The power scale^-beta is left to the caller: without Intel's SVML, numba
    compiles ``**`` as one scalar call per element, ten times slower than
    numpy's vectorised float32 power.
    """
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    coeff = alpha / size
    src, sums = x.reshape(-1), scale.reshape(-1)
    count = U(hi - lo)
    for row in numba.prange(n_img * channels):
        n, c = row // channels, row % channels
        here = U(row * plane + lo)
        for i in range(count):
            sums[here + i] = 0.0
        for j in range(max(c - pre_pad, 0), min(c - pre_pad + size, channels)):
            there = U((n * channels + j) * plane + lo)
            for i in range(count):
                sums[here + i] += src[there + i] * src[there + i]
        for i in range(count):
            sums[here + i] = k + coeff * sums[here + i]


@numba.njit(parallel=True, **JIT)
def lrn_across_backward_kernel(x, y, scale, dy, size, alpha, beta, dx, lo, hi):
    """dx = dy * scale^-beta - 2 alpha beta/size * x * sum_window(dy * y / scale).

    Pixels lo..hi of every (image, channel) row; dx holds scale^-beta on entry
    (see ``lrn_scale``).  Output c' uses input c when c lies in c'-window, so
    the sum runs over the same symmetric window.
    """
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    coeff = 2.0 * alpha * beta / size
    src, prod, sums, grad, target = (x.reshape(-1), y.reshape(-1), scale.reshape(-1),
                                     dy.reshape(-1), dx.reshape(-1))
    count = U(hi - lo)
    windows = np.empty(n_img * channels * (hi - lo), np.float32)
    for row in numba.prange(n_img * channels):
        n, c = row // channels, row % channels
        here = U(row * plane + lo)
        own = U(row) * count
        for i in range(count):
            windows[own + i] = 0.0
        for j in range(max(c - pre_pad, 0), min(c + size - pre_pad, channels)):
            there = U((n * channels + j) * plane + lo)
            for i in range(count):
                windows[own + i] += grad[there + i] * prod[there + i] / sums[there + i]
        for i in range(count):
            target[here + i] = (grad[here + i] * target[here + i]
                                - coeff * src[here + i] * windows[own + i])


@numba.njit(parallel=True, **_SUMS)
def channel_mean_var_kernel(x, mean, var, lo, hi):
    """Mean and biased variance of channels lo..hi of x (N, C, S), in one pass.

    The sums of d = x - K and d^2, K the channel's first value, in float32 along
    each row (vector lanes) and float64 across rows: var = E[d^2] - E[d]^2 then
    keeps float32's precision unless the channel's spread is ~1e-3 of its distance
    to K (a second pass over x cost a BatchNorm forward a fifth of its memory
    traffic)."""
    n_img, channels, plane = x.shape
    src = x.reshape(-1)
    count = n_img * plane
    for c in numba.prange(lo, hi):
        shift = src[U(c * plane)]
        total = 0.0
        squares = 0.0
        for n in range(n_img):
            row = U((n * channels + c) * plane)
            row_total = np.float32(0.0)
            row_squares = np.float32(0.0)
            for s in range(U(plane)):
                d = src[row + s] - shift
                row_total += d
                row_squares += d * d
            total += row_total
            squares += row_squares
        mu = total / count
        mean[c] = shift + mu
        var[c] = max(squares / count - mu * mu, 0.0)


@numba.njit(parallel=True, **_SUMS)
def channel_sums_kernel(a, b, gate, slope, sum_a, sum_ab, lo, hi):
    """Sums of a and of a*b over (N, S) for channels lo..hi of (N, C, S) arrays, a taken
    through the gradient of a ReLU whose output is ``gate`` unless gate is empty; float32
    along each row (vector lanes), float64 across rows."""
    n_img, channels, plane = a.shape
    first, second, gated = a.reshape(-1), b.reshape(-1), gate.size > 0
    outputs = gate.reshape(-1)
    for c in numba.prange(lo, hi):
        total = 0.0
        product = 0.0
        for n in range(n_img):
            row = U((n * channels + c) * plane)
            row_total = np.float32(0.0)
            row_product = np.float32(0.0)
            if gated:
                for s in range(U(plane)):
                    value = first[row + s] * relu_gradient(outputs[row + s], slope)
                    row_total += value
                    row_product += value * second[row + s]
            else:
                for s in range(U(plane)):
                    value = first[row + s]
                    row_total += value
                    row_product += value * second[row + s]
            total += row_total
            product += row_product
        sum_a[c] = total
        sum_ab[c] = product


@numba.njit(parallel=True, **JIT)
def normalize_rows_kernel(x, mean, divisor, length, out, lo, hi):
    """out over row r = (x - mean[r]) / divisor[r], Caffe's MVN order of operations."""
    n = U(length)
    for row in numba.prange(lo, hi):
        start = U(row) * n
        centre, scale = mean[row], divisor[row]
        for i in range(n):
            out[start + i] = (x[start + i] - centre) / scale


# ---- BatchNorm -> Scale [-> ReLU] in one pass each way ----------------------------

def affine_chain_forward(x, norm, affine, slope, normalized, out):
    """BatchNorm's, Scale's and optionally ReLU's forward in one pass over x (N, C, S).

    ``norm`` = (coeff, shift) and ``affine`` = (scale, bias or None) are (C,)
    arrays; ``slope`` is ReLU's negative slope, or None without a ReLU.
    normalized = x * coeff + shift (kept for backward), out = relu(normalized *
    scale + bias), each step rounded to float32 as the three layers round it.
    out may alias x.
    """
    n_img, channels, plane = x.shape
    scale, bias = affine
    relu, slope_value = _relu_terms(slope)
    bias = np.empty(0, np.float32) if bias is None else bias
    # Unit: one (image, channel) row; reads x, writes normalized and out.
    scheduler.units("affine_chain_forward", n_img * channels, (plane + 4) * x.itemsize,
                    2 * plane * out.itemsize, 6 * plane,
                    lambda lo, hi: affine_chain_forward_kernel(
                        x, norm[0], norm[1], scale, relu, slope_value, bias, normalized, out,
                        lo, hi))


def affine_chain_backward(y, dy, normalized, slope, coeffs, dx):
    """dx = dz * coeffs[0] + normalized * coeffs[1] + coeffs[2] over (N, C, S) arrays, with
    dz = dy through the ReLU (of output y) unless ``slope`` is None; coefficients are (C,)
    arrays; dx may alias dy.  (The sums this needs: ``channel_sums`` with relu_output.)"""
    n_img, channels, plane = y.shape
    relu, slope_value = _relu_terms(slope)
    scheduler.units("affine_chain_backward", n_img * channels, (3 * plane + 3) * y.itemsize,
                    plane * dx.itemsize, 7 * plane,
                    lambda lo, hi: affine_chain_backward_kernel(
                        y, dy, normalized, relu, slope_value, coeffs[0], coeffs[1], coeffs[2],
                        dx, lo, hi))


def _relu_terms(slope):
    """(whether a ReLU is part of the chain, its slope as float32)."""
    return slope is not None, np.float32(slope or 0.0)


@numba.njit(parallel=True, **JIT)
def affine_chain_forward_kernel(x, coeff, shift, scale, relu, slope, bias, normalized, out,
                                lo, hi):
    """Rows lo..hi of (N, C, S) x: see ``affine_chain_forward``."""
    n_img, channels, plane = x.shape
    src, kept, dst = x.reshape(-1), normalized.reshape(-1), out.reshape(-1)
    inner = U(plane)
    has_bias = bias.size > 0
    for row in numba.prange(lo, hi):
        c = row % channels
        start = U(row) * inner
        a, b, s = coeff[c], shift[c], scale[c]
        offset = bias[c] if has_bias else np.float32(0)
        for i in range(inner):
            value = src[start + i] * a
            value = value + b
            kept[start + i] = value
            value = value * s
            if has_bias:
                value = value + offset
            if relu:
                value = relu_value(value, slope)
            dst[start + i] = value


@numba.njit(parallel=True, **JIT)
def affine_chain_backward_kernel(y, dy, normalized, relu, slope, k_dz, k_normalized, k_shift,
                                 dx, lo, hi):
    """Rows lo..hi: dx = dz * k_dz[c] + normalized * k_normalized[c] + k_shift[c]."""
    n_img, channels, plane = y.shape
    out, grad, kept, dst = y.reshape(-1), dy.reshape(-1), normalized.reshape(-1), dx.reshape(-1)
    inner = U(plane)
    for row in numba.prange(lo, hi):
        c = row % channels
        start = U(row) * inner
        a, b, d = k_dz[c], k_normalized[c], k_shift[c]
        for i in range(inner):
            dz = grad[start + i]
            if relu:
                dz = dz * relu_gradient(out[start + i], slope)
            dst[start + i] = dz * a + kept[start + i] * b + d
