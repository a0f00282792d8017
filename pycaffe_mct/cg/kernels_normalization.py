"""numba kernels of the normalisation layers: LRN across channels and per-channel statistics.

Arrays are viewed as (N, C, S) with S the flattened spatial extent.  As in
``kernels.py``, loops address flat views with unsigned offsets so that LLVM
vectorises them, and the innermost loop runs along S (contiguous).  Statistics
accumulate in float64 so that a 56x56x32 channel reduction keeps float32
accuracy; their loops may reassociate those sums (``fastmath`` reassoc only:
NaN and infinity keep their meaning), which is what lets them vectorise.
"""
import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)
_SUMS = dict(_JIT, fastmath={"reassoc"})
_U = numba.uint64


@numba.njit(parallel=True, **_JIT)
def lrn_scale(x, size, alpha, k, scale, lo, hi):
    """scale = k + alpha/size * (sum of x^2 over the channel window), pixels lo..hi.

    The power scale^-beta is left to the caller: without Intel's SVML, numba
    compiles ``**`` as one scalar call per element, ten times slower than
    numpy's vectorised float32 power.
    """
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    coeff = alpha / size
    src, sums = x.reshape(-1), scale.reshape(-1)
    count = _U(hi - lo)
    for row in numba.prange(n_img * channels):
        n, c = row // channels, row % channels
        here = _U(row * plane + lo)
        for i in range(count):
            sums[here + i] = 0.0
        for j in range(max(c - pre_pad, 0), min(c - pre_pad + size, channels)):
            there = _U((n * channels + j) * plane + lo)
            for i in range(count):
                sums[here + i] += src[there + i] * src[there + i]
        for i in range(count):
            sums[here + i] = k + coeff * sums[here + i]


@numba.njit(parallel=True, **_JIT)
def lrn_across_backward(x, y, scale, dy, size, alpha, beta, dx, lo, hi):
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
    count = _U(hi - lo)
    windows = np.empty(n_img * channels * (hi - lo), np.float32)
    for row in numba.prange(n_img * channels):
        n, c = row // channels, row % channels
        here = _U(row * plane + lo)
        own = _U(row) * count
        for i in range(count):
            windows[own + i] = 0.0
        for j in range(max(c - pre_pad, 0), min(c + size - pre_pad, channels)):
            there = _U((n * channels + j) * plane + lo)
            for i in range(count):
                windows[own + i] += grad[there + i] * prod[there + i] / sums[there + i]
        for i in range(count):
            target[here + i] = (grad[here + i] * target[here + i]
                                - coeff * src[here + i] * windows[own + i])


@numba.njit(parallel=True, **_SUMS)
def channel_mean_var(x, mean, var, lo, hi):
    """Mean and biased variance of channels lo..hi of x (N, C, S), two-pass."""
    n_img, channels, plane = x.shape
    src = x.reshape(-1)
    count = n_img * plane
    for c in numba.prange(lo, hi):
        total = 0.0
        for n in range(n_img):
            row = _U((n * channels + c) * plane)
            for s in range(_U(plane)):
                total += src[row + s]
        mu = total / count
        squares = 0.0
        for n in range(n_img):
            row = _U((n * channels + c) * plane)
            for s in range(_U(plane)):
                d = src[row + s] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / count


@numba.njit(parallel=True, **_SUMS)
def channel_sums(a, b, sum_a, sum_ab, lo, hi):
    """Sums of a and of a*b over (N, S) for channels lo..hi of (N, C, S) arrays."""
    n_img, channels, plane = a.shape
    first, second = a.reshape(-1), b.reshape(-1)
    for c in numba.prange(lo, hi):
        total = 0.0
        product = 0.0
        for n in range(n_img):
            row = _U((n * channels + c) * plane)
            for s in range(_U(plane)):
                total += first[row + s]
                product += first[row + s] * second[row + s]
        sum_a[c] = total
        sum_ab[c] = product
