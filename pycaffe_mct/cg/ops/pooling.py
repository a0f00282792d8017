"""Max and average pooling: the ops, their unit costs and their numba kernels.

A unit is one (image, channel) plane.  Pooling windows are too short to
vectorise (every variant tried, tap-major rows, phase planes, gathers, was
slower); flat unsigned offsets save the wraparound branches and the window
loops run unrolled.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def _planes(kernel_name, x_plane, y_plane, planes, in_bytes, out_bytes, flops, run):
    """A kernel whose unit is one (image, channel) plane; sizes are in elements per plane.
    Planes are independent, so large calls are spread over the host threads."""
    scheduler.units(kernel_name, planes, in_bytes * x_plane, out_bytes * y_plane,
                    flops * y_plane, run, spread=True)


def max_pool_forward(x, kernel, stride, pad, out, argmax):
    n_img, channels, height, width = x.shape
    _planes("max_pool_forward", height * width, out.shape[2] * out.shape[3],
            n_img * channels, x.itemsize, out.itemsize + argmax.itemsize,
            kernel[0] * kernel[1],
            lambda lo, hi: max_pool_forward_kernel(x, kernel[0], kernel[1], stride[0],
                                                   stride[1], pad[0], pad[1], out, argmax,
                                                   lo, hi))


def max_pool_backward(dy, argmax, dx):
    n_img, channels, height, width = dx.shape
    # Per plane: dy and argmax in, dx out.
    _planes("max_pool_backward", dy.shape[2] * dy.shape[3], height * width,
            n_img * channels, dy.itemsize + argmax.itemsize, dx.itemsize, 0,
            lambda lo, hi: max_pool_backward_kernel(dy, argmax, dx, lo, hi))


def ave_pool_forward(x, kernel, stride, pad, out):
    n_img, channels, height, width = x.shape
    _planes("ave_pool_forward", height * width, out.shape[2] * out.shape[3],
            n_img * channels, x.itemsize, out.itemsize, kernel[0] * kernel[1],
            lambda lo, hi: ave_pool_kernel(x, out, kernel[0], kernel[1], stride[0], stride[1],
                                           pad[0], pad[1], False, lo, hi))


def ave_pool_backward(dy, kernel, stride, pad, dx):
    n_img, channels, height, width = dx.shape
    _planes("ave_pool_backward", dy.shape[2] * dy.shape[3], height * width,
            n_img * channels, dy.itemsize, dx.itemsize, 0,
            lambda lo, hi: ave_pool_kernel(dx, dy, kernel[0], kernel[1], stride[0], stride[1],
                                           pad[0], pad[1], True, lo, hi))


# Caffe starts every MAX window at -FLT_MAX, so an input must be larger to win.
_LOWEST_FLOAT32 = np.float32(-3.4028234663852886e38)


@numba.njit(inline="always")
def _window(index, stride, pad, kernel, size):
    """One axis of a pooling window: (first, end) clipped to the image, and the extent
    that divides an AVE window: it counts the padding but not what lies beyond it."""
    start = index * stride - pad
    stop = min(start + kernel, size + pad)
    return max(start, 0), min(stop, size), stop - start


@numba.njit(inline="always")
def _window_max(src, image, width, y0, y1, x0, columns):
    """(maximum, its index in the plane) of a window; the first maximum wins, and a value
    must exceed -FLT_MAX (index -1 otherwise).  Selects, not branches: random data
    costs no mispredictions."""
    best = _LOWEST_FLOAT32
    winner = np.int32(-1)
    for iy in range(y0, y1):
        first = U(iy * width + x0)
        for ix in range(columns):
            value = src[image + first + ix]
            wins = value > best
            best = value if wins else best
            winner = np.int32(first + ix) if wins else winner
    return best, winner


@numba.njit(inline="always")
def _window_sum(src, image, width, y0, y1, x0, columns):
    """float32 sum of a window, row by row as Caffe adds it."""
    total = np.float32(0.0)
    for iy in range(y0, y1):
        first = image + U(iy * width + x0)
        for ix in range(columns):
            total += src[first + ix]
    return total


@numba.njit(inline="always")
def _window_add(target, image, width, y0, y1, x0, columns, share):
    """Add share to every input of a window."""
    for iy in range(y0, y1):
        first = image + U(iy * width + x0)
        for ix in range(columns):
            target[first + ix] += share


@numba.njit(**JIT)
def max_pool_forward_kernel(x, kh, kw, sh, sw, ph, pw, out, argmax, lo, hi):
    """Caffe's MAX pooling of planes lo..hi: windows clipped to the image, first maximum wins.

    argmax holds the winner's index in its plane (y * width + x).  Windows 2 or
    3 wide get a literal width, which LLVM unrolls.
    """
    _, _, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    src, dst, where = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for plane in range(lo, hi):
        image = U(plane * height * width)
        for oy in range(out_h):
            y0, y1, _ = _window(oy, sh, ph, kh, height)
            row = U((plane * out_h + oy) * out_w)
            for ox in range(out_w):
                x0, x1, _ = _window(ox, sw, pw, kw, width)
                if x1 - x0 == 3:
                    best, winner = _window_max(src, image, width, y0, y1, x0, U(3))
                elif x1 - x0 == 2:
                    best, winner = _window_max(src, image, width, y0, y1, x0, U(2))
                else:
                    best, winner = _window_max(src, image, width, y0, y1, x0, U(x1 - x0))
                dst[row + U(ox)] = best
                where[row + U(ox)] = winner


@numba.njit(**JIT)
def max_pool_backward_kernel(dy, argmax, dx, lo, hi):
    """Route each output gradient of planes lo..hi to the input that won its window."""
    in_plane = U(dx.shape[2] * dx.shape[3])
    out_plane = U(dy.shape[2] * dy.shape[3])
    grad, where, target = dy.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    for plane in range(lo, hi):
        image = U(plane) * in_plane
        for i in range(in_plane):
            target[image + i] = 0.0
        row = U(plane) * out_plane
        for i in range(out_plane):
            winner = where[row + i]
            if winner >= 0:
                target[image + U(winner)] += grad[row + i]


@numba.njit(**JIT)
def _ave_divisors(kh, kw, sh, sw, ph, pw, height, width, out_h, out_w):
    """Each output's AVE divisor (the same in every plane), a float32 as in Caffe."""
    divisors = np.empty(out_h * out_w, np.float32)
    for oy in range(out_h):
        extent_h = _window(oy, sh, ph, kh, height)[2]
        for ox in range(out_w):
            divisors[oy * out_w + ox] = extent_h * _window(ox, sw, pw, kw, width)[2]
    return divisors


@numba.njit(inline="always")
def _ave_window(bottom, top, backward, image, width, y0, y1, x0, columns, at, divisor):
    """One AVE window: forward, top[at] = the window's sum over the divisor; backward,
    top[at] over the divisor added to every input of the window."""
    if backward:
        _window_add(bottom, image, width, y0, y1, x0, columns, top[at] / divisor)
    else:
        top[at] = _window_sum(bottom, image, width, y0, y1, x0, columns) / divisor


@numba.njit(**JIT)
def ave_pool_kernel(bottom, top, kh, kw, sh, sw, ph, pw, backward, lo, hi):
    """Caffe's AVE pooling of planes lo..hi, both directions one walk over the windows.

    Forward: top = each window's float32 sum of bottom (row by row, as Caffe adds)
    over its divisor.  Backward: bottom (gradients) = each top gradient spread evenly
    over its window, in Caffe's order.  Windows 2 or 3 wide get a literal width, which
    LLVM unrolls, as in MAX pooling.
    """
    _, _, height, width = bottom.shape
    out_h, out_w = top.shape[2], top.shape[3]
    divisors = _ave_divisors(kh, kw, sh, sw, ph, pw, height, width, out_h, out_w)
    inputs, pooled = bottom.reshape(-1), top.reshape(-1)
    for plane in range(lo, hi):
        image = U(plane * height * width)
        if backward:
            for i in range(U(height * width)):
                inputs[image + i] = 0.0
        first = U(plane * out_h * out_w)
        for oy in range(out_h):
            y0, y1, _ = _window(oy, sh, ph, kh, height)
            row = U(oy * out_w)
            for ox in range(out_w):
                x0, x1, _ = _window(ox, sw, pw, kw, width)
                at, divisor = first + row + U(ox), divisors[row + U(ox)]
                if x1 - x0 == 3:
                    _ave_window(inputs, pooled, backward, image, width, y0, y1, x0, U(3),
                                at, divisor)
                elif x1 - x0 == 2:
                    _ave_window(inputs, pooled, backward, image, width, y0, y1, x0, U(2),
                                at, divisor)
                else:
                    _ave_window(inputs, pooled, backward, image, width, y0, y1, x0,
                                U(x1 - x0), at, divisor)
