"""Direct convolution in register blocks, for small-channel stride-1 convolutions.

im2col + GEMM writes every input pixel kh*kw times into a column matrix and
reads it back; with 32-64 channels (CIFAR10-quick) that copy costs about as
much as the GEMM's arithmetic.  These kernels read the zero-framed images
where they lie: output pixels (oy, ox..ox+15) at filter tap (c, i, j) need
the inputs x[c, oy + i, ox + j..ox + j + 15], one unaligned vector load (two
half loads when the 16 pixels span two output rows, as rows of 8 or 56 pixels
make them), and register blocks of
16-lane vectors (``simd``) do the arithmetic, as in ``register_gemm``:

* forward: 8 output channels by 32 output pixels are 16 accumulators; each tap
  costs two loads of inputs, eight broadcasts of a filter weight (the filters
  packed once per call in panels of 8 channels, tap-major) and 16 fused
  multiply-adds.  Each output is one running sum over the taps in (c, i, j)
  order, the order im2col + GEMM sums them in.
* input gradient: for stride 1 it is itself a convolution, of the top gradient
  framed by kh-1-ph (kw-1-pw) with the filters turned 180 degrees, input and
  output channels swapped: the forward kernel with the panels packed that way.
* filter gradient: 8 output channels by 3 taps are 24 accumulators of 16
  pixels each; each step of 16 pixels costs three input loads, eight of the top
  gradient and 24 multiply-adds, and the lanes are summed into the gradient
  after each chunk of images (``CHUNK_PIXELS``), chunk by chunk.

Every unit owns its outputs (or its filter taps) and sums them in a fixed
order, so the bits do not depend on how the units are split over threads or tiles.
"""
from dataclasses import replace

import numba
import numpy as np

from .. import scheduler, simd
from ..register_gemm import store_block, update_block, zeros_block
from ..jit import JIT, U
from ..workspace import workspace

# Output channels and pixels of a register block.
CHANNELS = 8
PIXELS = 2 * simd.LANES
# Output rows must be whole runs of this many pixels (half a vector).
HALF = simd.LANES // 2


def applies(window, in_channels, out_channels, out_hw):
    """Whether a convolution's forward and filter gradient go by these kernels: stride 1,
    no dilation, one group, a kernel larger than 1x1 (a pointwise convolution is already a
    plain GEMM), 2 to ``MAX_CHANNELS`` input channels, output channels in whole blocks of 8,
    output rows in whole half vectors of 8 pixels and planes in whole blocks of 32.
    Measured, ms forward / backward at 2 threads (Zen 4), against im2col or Winograd:
    CIFAR10-quick's conv2 (32 channels on 16x16, batch 100) 8.1 / 17.6 against 14.8 /
    28.5, 64 channels on 16x16 2.6 / 5.0 against 4.1 / 7.8 (Winograd), on 56x56 12.0 /
    28.9 against 13.9 / 28.3; 256 channels on 56x56 lose, 41.6 / 124.7 against 29.3 /
    60.9 (their images no longer fit a core's cache)."""
    return (window.stride == (1, 1) and window.dilation == (1, 1) and window.group == 1
            and window.kernel != (1, 1) and 1 < in_channels <= MAX_CHANNELS
            and out_channels <= MAX_CHANNELS and out_channels % CHANNELS == 0
            and out_hw[1] % HALF == 0 and out_hw[0] * out_hw[1] % PIXELS == 0)


# More input or output channels than this go by Winograd or im2col.
MAX_CHANNELS = 64


def applies_transpose(window, in_channels, out_channels, in_hw):
    """Whether the input gradient goes by this kernel (it convolves the top gradient
    into the input's shape): as ``applies`` with the roles swapped, and padding that
    leaves the turned convolution a frame of at least zero."""
    return (applies(window, out_channels, in_channels, in_hw)
            and all(p <= k - 1 for p, k in zip(window.pad, window.kernel)))


def turned(window):
    """The window of the input gradient's convolution: the frame that makes a full one."""
    return replace(window, pad=tuple(k - 1 - p for k, p in zip(window.kernel, window.pad)))


def convolve(framed, weight, y, flip=False):
    """y (N, O, oh, ow) = weight * framed, where framed (N, C, oh + kh - 1, ow + kw - 1)
    holds the images with their padding; ``flip``: convolve with weight (C, O, kh, kw)
    turned 180 degrees and transposed (the input gradient)."""
    outputs = y.shape[1]
    taps = framed.shape[1] * weight.shape[2] * weight.shape[3]
    panels = _panels(weight, flip, outputs, taps)
    n_img, _, out_h, out_w = y.shape
    blocks = outputs // CHANNELS
    pixel_blocks = out_h * out_w // PIXELS
    kh, kw = weight.shape[2], weight.shape[3]
    in_bytes = 4 * (taps * CHANNELS + framed.shape[1] * (PIXELS // out_w + kh) * framed.shape[3])

    def run(lo, hi):
        convolve_kernel(framed, panels, kh, kw, y, lo, hi)
    scheduler.units("direct_convolution", n_img * pixel_blocks * blocks, in_bytes,
                    4 * CHANNELS * PIXELS, 2 * CHANNELS * PIXELS * taps, run, spread=True)


def _panels(weight, flip, outputs, taps):
    """The filters packed for ``convolve_kernel`` (see ``pack_kernel``), in scratch."""
    panels = workspace(("direct_panels", 0), (outputs * taps,))

    def run(lo, hi):
        pack_kernel(weight, flip, panels, lo, hi)
    scheduler.units("direct_filters", outputs, 4 * taps, 4 * taps, 0, run)
    return panels


@numba.njit(inline="always")
def _pixel(p, out_w, width):
    """Where output pixel p's window starts in a framed image ``width`` wide."""
    return (p // out_w) * width + p % out_w


@numba.njit(**JIT)
def pack_kernel(weight, flip, panels, lo, hi):
    """panels[(o // 8) * 8T + t * 8 + o % 8] = filter o's tap t, t = (c, i, j) in order,
    for filters o in lo..hi; flip: the filters of the turned, transposed convolution (o and
    c swapped, i and j reversed)."""
    n_out, n_in, kh, kw = weight.shape
    inputs = n_out if flip else n_in
    taps = inputs * kh * kw
    for o in range(lo, hi):
        base = (o // CHANNELS) * CHANNELS * taps + o % CHANNELS
        for c in range(inputs):
            for i in range(kh):
                for j in range(kw):
                    t = (c * kh + i) * kw + j
                    if flip:
                        value = weight[c, o, kh - 1 - i, kw - 1 - j]
                    else:
                        value = weight[o, c, i, j]
                    panels[base + t * CHANNELS] = value


@numba.njit(**JIT)
def convolve_kernel(framed, panels, kh, kw, y, lo, hi):
    """Units lo..hi of y = panels * framed; unit u = (image, pixel block, channel block),
    the channel block innermost so the image rows a pixel block reads stay in L1."""
    n_img, inputs, height, width = framed.shape
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    blocks = outputs // CHANNELS
    pixel_blocks = out_h * out_w // PIXELS
    taps = inputs * kh * kw
    x = framed.reshape(-1)
    out = y.reshape(-1)
    for u in range(lo, hi):
        block = u % blocks
        pixels = (u // blocks) % pixel_blocks
        n = u // (blocks * pixel_blocks)
        p0 = pixels * PIXELS
        image = n * inputs * height * width
        first0 = U(image + _pixel(p0, out_w, width))
        first0_high = U(image + _pixel(p0 + 8, out_w, width))
        first1 = U(image + _pixel(p0 + 16, out_w, width))
        first1_high = U(image + _pixel(p0 + 24, out_w, width))
        # Vectors within one row each take one load, those across two rows two halves.
        whole_rows = first0_high == first0 + U(8) and first1_high == first1 + U(8)
        a = U(block * CHANNELS * taps)
        sums = zeros_block()
        for c in range(inputs):
            plane = U(c * height * width)
            for i in range(kh):
                row = plane + U(i * width)
                for j in range(kw):
                    at = row + U(j)
                    if whole_rows:
                        b0 = simd.load(x, first0 + at)
                        b1 = simd.load(x, first1 + at)
                    else:
                        b0 = simd.load_halves(x, first0 + at, first0_high + at)
                        b1 = simd.load_halves(x, first1 + at, first1_high + at)
                    sums = update_block(panels, a, b0, b1, sums)
                    a += U(CHANNELS)
        step = U(out_h * out_w)
        store_block(out, U((n * outputs + block * CHANNELS) * out_h * out_w + p0), step, sums)


# Filter taps of a filter-gradient register block, and output pixels (whole images) summed
# between adds to the gradient.
TAPS = 3
CHUNK_PIXELS = 2048


def accumulate_weight_grad(framed, dy, weight_diff):
    """weight_diff (O, C, kh, kw) += dy (x) framed: for each filter tap, the sum over images
    and output pixels of the top gradient times the input the tap saw."""
    n_out, n_in, kh, kw = weight_diff.shape
    height, width = framed.shape[2], framed.shape[3]
    taps = n_in * kh * kw
    triples = -(-taps // TAPS)
    offsets = np.empty(triples * TAPS, np.int64)
    t = np.arange(taps)
    offsets[:taps] = (t // (kh * kw)) * height * width + (t // kw % kh) * width + t % kw
    offsets[taps:] = offsets[taps - 1]
    blocks = n_out // CHANNELS
    plane = dy.shape[2] * dy.shape[3]
    chunk = max(1, CHUNK_PIXELS // plane)
    in_bytes = 4 * dy.shape[0] * (CHANNELS * plane + TAPS * plane)

    def run(lo, hi):
        weight_grad_kernel(framed, dy, offsets, taps, chunk, weight_diff, lo, hi)
    scheduler.units("direct_weight_grad", blocks * triples, in_bytes, 4 * CHANNELS * TAPS,
                    2 * CHANNELS * TAPS * plane * dy.shape[0], run, spread=True)


@numba.njit(**JIT)
def weight_grad_kernel(framed, dy, offsets, taps, chunk, weight_diff, lo, hi):
    """Units lo..hi of the filter gradient; unit u = (channel block, tap triple), triples
    innermost so the top gradient's block of channels stays in L1.  The images go in
    chunks of ``chunk``: a chunk's sums are added to the gradient, in chunk order."""
    n_img, inputs, height, width = framed.shape
    outputs, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
    plane = out_h * out_w
    triples = offsets.shape[0] // TAPS
    whole_rows = out_w % simd.LANES == 0
    x = framed.reshape(-1)
    d = dy.reshape(-1)
    grad = weight_diff.reshape(-1)
    for n0 in range(0, n_img, chunk):
        for u in range(lo, hi):
            block = u // triples
            t0 = (u % triples) * TAPS
            off0 = U(offsets[t0])
            off1 = U(offsets[t0 + 1])
            off2 = U(offsets[t0 + 2])
            c00 = simd.zeros(); c01 = simd.zeros(); c02 = simd.zeros()
            c10 = simd.zeros(); c11 = simd.zeros(); c12 = simd.zeros()
            c20 = simd.zeros(); c21 = simd.zeros(); c22 = simd.zeros()
            c30 = simd.zeros(); c31 = simd.zeros(); c32 = simd.zeros()
            c40 = simd.zeros(); c41 = simd.zeros(); c42 = simd.zeros()
            c50 = simd.zeros(); c51 = simd.zeros(); c52 = simd.zeros()
            c60 = simd.zeros(); c61 = simd.zeros(); c62 = simd.zeros()
            c70 = simd.zeros(); c71 = simd.zeros(); c72 = simd.zeros()
            for n in range(n0, min(n0 + chunk, n_img)):
                image = U(n * inputs * height * width)
                rows = U((n * outputs + block * CHANNELS) * plane)
                for p in range(0, plane, simd.LANES):
                    at = image + U(_pixel(p, out_w, width))
                    if whole_rows:
                        b0 = simd.load(x, at + off0)
                        b1 = simd.load(x, at + off1)
                        b2 = simd.load(x, at + off2)
                    else:
                        high = image + U(_pixel(p + 8, out_w, width))
                        b0 = simd.load_halves(x, at + off0, high + off0)
                        b1 = simd.load_halves(x, at + off1, high + off1)
                        b2 = simd.load_halves(x, at + off2, high + off2)
                    g = rows + U(p)
                    s = simd.load(d, g)
                    c00 = simd.fma(s, b0, c00); c01 = simd.fma(s, b1, c01)
                    c02 = simd.fma(s, b2, c02)
                    s = simd.load(d, g + U(plane))
                    c10 = simd.fma(s, b0, c10); c11 = simd.fma(s, b1, c11)
                    c12 = simd.fma(s, b2, c12)
                    s = simd.load(d, g + U(2 * plane))
                    c20 = simd.fma(s, b0, c20); c21 = simd.fma(s, b1, c21)
                    c22 = simd.fma(s, b2, c22)
                    s = simd.load(d, g + U(3 * plane))
                    c30 = simd.fma(s, b0, c30); c31 = simd.fma(s, b1, c31)
                    c32 = simd.fma(s, b2, c32)
                    s = simd.load(d, g + U(4 * plane))
                    c40 = simd.fma(s, b0, c40); c41 = simd.fma(s, b1, c41)
                    c42 = simd.fma(s, b2, c42)
                    s = simd.load(d, g + U(5 * plane))
                    c50 = simd.fma(s, b0, c50); c51 = simd.fma(s, b1, c51)
                    c52 = simd.fma(s, b2, c52)
                    s = simd.load(d, g + U(6 * plane))
                    c60 = simd.fma(s, b0, c60); c61 = simd.fma(s, b1, c61)
                    c62 = simd.fma(s, b2, c62)
                    s = simd.load(d, g + U(7 * plane))
                    c70 = simd.fma(s, b0, c70); c71 = simd.fma(s, b1, c71)
                    c72 = simd.fma(s, b2, c72)
            row = U(block * CHANNELS * taps + t0)
            step = U(taps)
            _add_taps(grad, row, taps - t0, c00, c01, c02); row += step
            _add_taps(grad, row, taps - t0, c10, c11, c12); row += step
            _add_taps(grad, row, taps - t0, c20, c21, c22); row += step
            _add_taps(grad, row, taps - t0, c30, c31, c32); row += step
            _add_taps(grad, row, taps - t0, c40, c41, c42); row += step
            _add_taps(grad, row, taps - t0, c50, c51, c52); row += step
            _add_taps(grad, row, taps - t0, c60, c61, c62); row += step
            _add_taps(grad, row, taps - t0, c70, c71, c72)


@numba.njit(inline="always")
def _add_taps(grad, at, left, first, second, third):
    """grad[at + t] += the t-th sum's lanes, for the triple's taps that are not past the
    last tap (repeats of it), ``left`` of them."""
    grad[at] += simd.total(first)
    if left > 1:
        grad[at + U(1)] += simd.total(second)
    if left > 2:
        grad[at + U(2)] += simd.total(third)
