"""Convolutions of a one-channel input, by shifted runs of the image instead of im2col.

The first layer of a grayscale net (LeNet's conv1, the digits demo's) convolves
one input channel.  By im2col + GEMM that is a GEMM whose inner dimension is
only kh*kw (25 for 5x5), where BLAS runs far under its peak: LeNet's conv1 at
batch 64 reached 33 GFLOP/s on 2 threads, a tenth of the machine's GEMM rate.

Directly, it is kh*kw multiply-adds of shifted images.  Lay an output plane out
row-major at the *input's* width W (p = oy*W + ox): the input of tap (ky, kx)
for every p is x[p + ky*W + kx], one contiguous run, so each tap is one
vectorised loop over the whole plane; the W - OW positions past the end of each
output row are computed too and dropped (17 % more work for LeNet's 28 -> 24).
The filter gradient is the same runs read the other way: dw[o, ky, kx] is the
dot product of the top gradient, laid out at width W with zeros in those
positions, with the run of tap (ky, kx), summed over the images in order.

Each output sums its taps in row-major order from zero, so a result does not
depend on the thread count; it differs from im2col + GEMM's by float32 rounding
(BLAS adds in another order).  Stride 1, no dilation, one group.  Units: an (image, output channel)
plane forward, an output channel for the filter gradient (all images), so the
host threads, or the core group's CPEs, split output channels, never a sum.
Both entry points take the images already framed by the padding (``convolution``
pads them first).
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U

# Multiply and add fused (FMA), and the filter gradient's dot products summed in vector lanes.
_FAST = dict(JIT, fastmath={"contract", "reassoc"})


def applies(window, in_channels):
    """Whether a convolution of ``in_channels`` input channels goes by this module."""
    return (in_channels == 1 and window.group == 1 and window.stride == (1, 1)
            and window.dilation == (1, 1))


def convolve(images, weight, y):
    """y (N, O, out_h, out_w) = images (N, 1, H, W, padded) convolved with weight (O, 1, kh, kw)."""
    n_img, _, height, width = images.shape
    outputs, _, kh, kw = weight.shape
    out_plane = y.shape[2] * y.shape[3]
    scheduler.units("single_channel_forward", n_img * outputs,
                    (height * width + kh * kw) * images.itemsize, out_plane * y.itemsize,
                    2 * out_plane * kh * kw,
                    lambda lo, hi: single_channel_forward_kernel(images, weight, y, lo, hi),
                    spread=True)


def accumulate_weight_grad(images, dy, weight_diff):
    """weight_diff (O, 1, kh, kw) += the filter gradient of images (N, 1, H, W, padded)."""
    n_img, _, height, width = images.shape
    outputs, _, kh, kw = weight_diff.shape
    out_plane = dy.shape[2] * dy.shape[3]
    scheduler.units("single_channel_weight_grad", outputs,
                    n_img * (height * width + out_plane) * images.itemsize,
                    kh * kw * weight_diff.itemsize, 2 * n_img * out_plane * kh * kw,
                    lambda lo, hi: single_channel_weight_grad_kernel(images, dy, weight_diff,
                                                                     lo, hi),
                    spread=True)


@numba.njit(inline="always")
def _wide_layout(x, filters, out):
    """(height, width, outputs, kh, kw, out_h, out_w, run) of images x, filters (O, 1, kh,
    kw) and outputs out: ``run`` is an output plane's length laid out at the input's width."""
    out_h, out_w = out.shape[2], out.shape[3]
    return (x.shape[2], x.shape[3], filters.shape[0], filters.shape[2], filters.shape[3],
            out_h, out_w, U((out_h - 1) * x.shape[3] + out_w))


@numba.njit(inline="always")
def _copy_rows(src, src_first, src_width, dst, dst_first, dst_width, rows, length):
    """``rows`` rows of ``length`` floats from flat src (rows ``src_width`` apart) to flat dst
    (rows ``dst_width`` apart): an output plane in and out of its wide layout."""
    for r in range(rows):
        source, target = src_first + U(r * src_width), dst_first + U(r * dst_width)
        for i in range(U(length)):
            dst[target + i] = src[source + i]


@numba.njit(**_FAST)
def single_channel_forward_kernel(x, weight, y, lo, hi):
    """Planes u = n * O + o in lo..hi of y: see the module doc."""
    height, width, outputs, kh, kw, out_h, out_w, run = _wide_layout(x, weight, y)
    src, taps, dst = x.reshape(-1), weight.reshape(-1), y.reshape(-1)
    wide = np.empty(out_h * width, np.float32)
    for unit in range(lo, hi):
        n, o = unit // outputs, unit % outputs
        for i in range(run):
            wide[i] = 0.0
        image = U(n * height * width)
        for ky in range(kh):
            for kx in range(kw):
                tap = taps[U((o * kh + ky) * kw + kx)]
                start = image + U(ky * width + kx)
                for i in range(run):
                    wide[i] += tap * src[start + i]
        _copy_rows(wide, U(0), width, dst, U(unit * out_h * out_w), out_w, out_h, out_w)


@numba.njit(**_FAST)
def single_channel_weight_grad_kernel(x, dy, weight_diff, lo, hi):
    """Output channels lo..hi of weight_diff += their filter gradient: see the module doc."""
    height, width, outputs, kh, kw, out_h, out_w, run = _wide_layout(x, weight_diff, dy)
    src, grad, dst = x.reshape(-1), dy.reshape(-1), weight_diff.reshape(-1)
    wide = np.zeros(out_h * width, np.float32)       # the columns past out_w stay zero
    sums = np.empty(kh * kw, np.float32)
    for o in range(lo, hi):
        for t in range(kh * kw):
            sums[t] = 0.0
        for n in range(x.shape[0]):
            _copy_rows(grad, U((n * outputs + o) * out_h * out_w), out_w, wide, U(0), width,
                       out_h, out_w)
            image = U(n * height * width)
            for ky in range(kh):
                for kx in range(kw):
                    start = image + U(ky * width + kx)
                    total = np.float32(0.0)
                    for i in range(run):
                        total += wide[i] * src[start + i]
                    sums[ky * kw + kx] += total
        for t in range(kh * kw):
            dst[U(o * kh * kw + t)] += sums[t]
