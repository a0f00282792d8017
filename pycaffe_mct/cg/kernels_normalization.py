"""numba kernels of the normalisation layers: LRN across channels and per-channel statistics.

Arrays are viewed as (N, C, S) with S the flattened spatial extent; every kernel
parallelises over its outermost independent index, the unit the core-group
scheduler hands to one CPE.  Sums accumulate in float64 so that a 56x56x32
channel reduction keeps float32 accuracy.
"""
import numba

_JIT = dict(nogil=True, cache=True)


@numba.njit(parallel=True, **_JIT)
def lrn_across_forward(x, size, alpha, beta, k, scale, out):
    """scale = k + alpha/size * (sum of x^2 over the channel window); out = x * scale^-beta."""
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    coeff = alpha / size
    for ns in numba.prange(n_img * plane):
        n = ns // plane
        s = ns % plane
        for c in range(channels):
            total = 0.0
            for j in range(max(c - pre_pad, 0), min(c - pre_pad + size, channels)):
                total += x[n, j, s] * x[n, j, s]
            value = k + coeff * total
            scale[n, c, s] = value
            out[n, c, s] = x[n, c, s] * value ** -beta


@numba.njit(parallel=True, **_JIT)
def lrn_across_backward(x, y, scale, dy, size, alpha, beta, dx):
    """dx = dy * scale^-beta - 2 alpha beta/size * x * sum_window(dy * y / scale)."""
    n_img, channels, plane = x.shape
    pre_pad = (size - 1) // 2
    coeff = 2.0 * alpha * beta / size
    for ns in numba.prange(n_img * plane):
        n = ns // plane
        s = ns % plane
        for c in range(channels):
            total = 0.0
            # Output c' uses input c when c lies in c'-window: the same symmetric window.
            for j in range(max(c - pre_pad, 0), min(c + size - pre_pad, channels)):
                total += dy[n, j, s] * y[n, j, s] / scale[n, j, s]
            dx[n, c, s] = dy[n, c, s] * scale[n, c, s] ** -beta - coeff * x[n, c, s] * total


@numba.njit(parallel=True, **_JIT)
def channel_mean_var(x, mean, var):
    """Per-channel mean and biased variance of x (N, C, S), two-pass."""
    n_img, channels, plane = x.shape
    count = n_img * plane
    for c in numba.prange(channels):
        total = 0.0
        for n in range(n_img):
            for s in range(plane):
                total += x[n, c, s]
        mu = total / count
        squares = 0.0
        for n in range(n_img):
            for s in range(plane):
                d = x[n, c, s] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / count


@numba.njit(parallel=True, **_JIT)
def channel_sums(a, b, sum_a, sum_ab):
    """Per-channel sums of a and of a*b over (N, S) of (N, C, S) arrays."""
    n_img, channels, plane = a.shape
    for c in numba.prange(channels):
        total = 0.0
        product = 0.0
        for n in range(n_img):
            for s in range(plane):
                total += a[n, c, s]
                product += a[n, c, s] * b[n, c, s]
        sum_a[c] = total
        sum_ab[c] = product
