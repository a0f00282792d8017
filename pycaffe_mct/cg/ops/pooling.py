"""Max and average pooling: the ops, their unit costs and their numba kernels.

A unit is one (image, channel) plane.  Pooling windows are too short to
vectorise (every variant tried, tap-major rows, phase planes, gathers, was
slower).  MAX pooling addresses flat views with unsigned offsets and selects
instead of branching, with literal widths LLVM unrolls (plain indexing and a
branch ran 1.7x slower); AVE pooling runs fastest written plainly, one kernel a
direction (2.7x faster than one walk for both with flat offsets and literal widths).
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
            lambda lo, hi: ave_pool_forward_kernel(x, out, kernel[0], kernel[1], stride[0],
                                                   stride[1], pad[0], pad[1], lo, hi))


def ave_pool_backward(dy, kernel, stride, pad, dx):
    n_img, channels, height, width = dx.shape
    _planes("ave_pool_backward", dy.shape[2] * dy.shape[3], height * width,
            n_img * channels, dy.itemsize, dx.itemsize, 0,
            lambda lo, hi: ave_pool_backward_kernel(dy, kernel[0], kernel[1], stride[0],
                                                    stride[1], pad[0], pad[1], dx, lo, hi))


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
def ave_pool_forward_kernel(x, out, kh, kw, sh, sw, ph, pw, lo, hi):
    """Caffe's AVE pooling of planes lo..hi: each window's float32 sum, row by row as
    Caffe adds it, over the window's extent counting the padding (``_window``)."""
    _, _, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    planes, pooled = x.reshape(-1, height, width), out.reshape(-1, out_h, out_w)
    for plane in range(lo, hi):
        for oy in range(out_h):
            y0, y1, extent_h = _window(oy, sh, ph, kh, height)
            for ox in range(out_w):
                x0, x1, extent_w = _window(ox, sw, pw, kw, width)
                total = np.float32(0.0)
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        total += planes[plane, iy, ix]
                pooled[plane, oy, ox] = total / np.float32(extent_h * extent_w)


@numba.njit(**JIT)
def ave_pool_backward_kernel(dy, kh, kw, sh, sw, ph, pw, dx, lo, hi):
    """AVE pooling's input gradient of planes lo..hi (overwritten): each output's gradient
    over its window's extent, added to every input of the window in Caffe's order."""
    _, _, height, width = dx.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    planes, pooled = dx.reshape(-1, height, width), dy.reshape(-1, out_h, out_w)
    for plane in range(lo, hi):
        planes[plane] = 0.0
        for oy in range(out_h):
            y0, y1, extent_h = _window(oy, sh, ph, kh, height)
            for ox in range(out_w):
                x0, x1, extent_w = _window(ox, sw, pw, kw, width)
                share = pooled[plane, oy, ox] / np.float32(extent_h * extent_w)
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        planes[plane, iy, ix] += share
