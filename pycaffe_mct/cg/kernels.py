"""numba kernels: the code each compute element runs on its share of the work.

Every kernel here is a pure function of arrays and integers, compiled with
``cache=True`` so that a second process starts without recompiling, and
``nogil`` so that data-loading threads keep running meanwhile.  The ``lo``/``hi``
arguments select a range of the outermost loop's units: the scheduler passes
a CPE tile's range (literal mode) or all units at once (fast mode).
"""
import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)


@numba.njit(parallel=True, **_JIT)
def max_pool_forward(x, kh, kw, sh, sw, ph, pw, out, argmax, lo, hi):
    """Caffe's MAX pooling: windows clipped to the image, first maximum wins."""
    n_img, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for nc in numba.prange(lo, hi):
        n = nc // channels
        c = nc % channels
        for oy in range(out_h):
            y0 = max(oy * sh - ph, 0)
            y1 = min(oy * sh - ph + kh, height)
            for ox in range(out_w):
                x0 = max(ox * sw - pw, 0)
                x1 = min(ox * sw - pw + kw, width)
                best = -np.inf
                where = -1
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        value = x[n, c, iy, ix]
                        if value > best:
                            best = value
                            where = iy * width + ix
                out[n, c, oy, ox] = best if where >= 0 else -3.4028234663852886e38
                argmax[n, c, oy, ox] = where


@numba.njit(parallel=True, **_JIT)
def max_pool_backward(dy, argmax, dx, lo, hi):
    """Route each output gradient to the input that won its window."""
    n_img, channels, height, width = dx.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    for nc in numba.prange(lo, hi):
        n = nc // channels
        c = nc % channels
        dx[n, c, :, :] = 0.0
        for oy in range(out_h):
            for ox in range(out_w):
                where = argmax[n, c, oy, ox]
                if where >= 0:
                    dx[n, c, where // width, where % width] += dy[n, c, oy, ox]


@numba.njit(inline="always", **_JIT)
def _ave_window(index, stride, pad, kernel, size):
    """One axis of an AVE window: (first, end) inside the image and the extent that divides.

    The extent counts the padding but not what lies beyond it, as Caffe does.
    """
    start = index * stride - pad
    stop = min(start + kernel, size + pad)
    return max(start, 0), min(stop, size), stop - start


@numba.njit(parallel=True, **_JIT)
def ave_pool_forward(x, kh, kw, sh, sw, ph, pw, out, lo, hi):
    """Caffe's AVE pooling: the divisor counts padding but not what lies beyond it."""
    n_img, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for nc in numba.prange(lo, hi):
        n = nc // channels
        c = nc % channels
        for oy in range(out_h):
            y0, y1, extent_h = _ave_window(oy, sh, ph, kh, height)
            for ox in range(out_w):
                x0, x1, extent_w = _ave_window(ox, sw, pw, kw, width)
                total = 0.0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        total += x[n, c, iy, ix]
                out[n, c, oy, ox] = total / (extent_h * extent_w)


@numba.njit(parallel=True, **_JIT)
def ave_pool_backward(dy, kh, kw, sh, sw, ph, pw, dx, lo, hi):
    n_img, channels, height, width = dx.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    for nc in numba.prange(lo, hi):
        n = nc // channels
        c = nc % channels
        dx[n, c, :, :] = 0.0
        for oy in range(out_h):
            y0, y1, extent_h = _ave_window(oy, sh, ph, kh, height)
            for ox in range(out_w):
                x0, x1, extent_w = _ave_window(ox, sw, pw, kw, width)
                share = dy[n, c, oy, ox] / (extent_h * extent_w)
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        dx[n, c, iy, ix] += share


@numba.njit(parallel=True, **_JIT)
def softmax_forward(x, out, lo, hi):
    """Softmax over axis 1 of x (outer, channels, inner), max-subtracted as Caffe does."""
    outer, channels, inner = x.shape
    for o in numba.prange(lo, hi):
        for i in range(inner):
            top = x[o, 0, i]
            for c in range(1, channels):
                top = max(top, x[o, c, i])
            total = 0.0
            for c in range(channels):
                value = np.exp(x[o, c, i] - top)
                out[o, c, i] = value
                total += value
            for c in range(channels):
                out[o, c, i] /= total


@numba.njit(parallel=True, **_JIT)
def softmax_backward(y, dy, dx, lo, hi):
    """dx = (dy - sum_c dy*y) * y over axis 1 of (outer, channels, inner)."""
    outer, channels, inner = y.shape
    for o in numba.prange(lo, hi):
        for i in range(inner):
            dot = 0.0
            for c in range(channels):
                dot += dy[o, c, i] * y[o, c, i]
            for c in range(channels):
                dx[o, c, i] = (dy[o, c, i] - dot) * y[o, c, i]
