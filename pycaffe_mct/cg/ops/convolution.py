"""Convolution on the core group: images unfolded into columns, then GEMMs.

A convolution of images x (N, C, H, W) with weights (O, C/G, kh, kw) in G
groups is, per group, the GEMM weight (O/G, R) @ columns (R, images*plane),
R = C/G*kh*kw, where im2col unfolds each output pixel's input window into a
column.  The images go in chunks:

* Executing (on either executor), chunks are small enough for their columns
  to stay in one core's cache (``CACHE_CHUNK_FLOATS``) and are spread over the
  host threads as lanes (``scheduler.lanes``): each thread unfolds a chunk and
  multiplies it while the columns are still in its cache, instead of all
  threads unfolding the whole batch to memory and reading it back.  Padded
  images are framed by zeros in a copy first, so im2col and col2im copy whole
  runs.  Weight gradients are summed per run of chunks, then over runs in
  order, so they do not depend on which thread did what.  The literal
  executor runs exactly these chunks, tile by tile, so its tests cover them.
* While accounting records (``pycaffe_mct time``, the scaling model), the
  figures are the core group's: chunks are as large as the MPE's column
  buffer allows (``PLAN_CHUNK_FLOATS``), or one image when that image's GEMM is
  already large, and padding stays inside im2col/col2im, where it costs no
  extra DMA.

Both run the same code per chunk (``ops``-level planned calls: im2col, GEMM,
col2im); only the chunk sizes and where padding happens differ.  A GEMM of
several images yields rows (O/G, images*plane) that are then put in image
order (N, O, plane): on the core group that is where the GEMM's DMA puts C, so
it is not a separate kernel.

Deconvolution is the transpose: its forward is ``convolve_transpose`` and its
backward ``convolve``, with the roles of bottom and top swapped.

Four kinds go by other kernels, which both entry points hand them over to
whole: convolutions of a one-channel input by shifted runs of the image
(``single_channel.py``; their input gradient stays here), stride-1 ones of at
most 64 channels by register blocks read straight from the images
(``direct.applies``, ``direct.py``; an input gradient they do not take stays
here), strided ones whose phase images make such a convolution (``phases.py``,
ResNet-50's conv1; their input gradient stays here), and 3x3 stride-1 ones of
enough channels by Winograd's F(2x2, 3x3) or F(4x4, 3x3) (``winograd.tiling``,
``winograd.py``).  ``im2col_only`` turns all four off.

The unfolding kernels (``im2col_kernel``, ``col2im_kernel``, ``copy_planes_kernel``)
are serial: convolution runs them on one chunk of images per host thread, so
the columns a thread writes stay in its core's cache for the GEMM that reads
them; the parallelism is across chunks.  They copy row segments with flat
unsigned offsets (see ``..jit``), in a few vector instructions (12x faster on
CIFAR-sized rows).
"""
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import numba

from .. import accounting, scheduler
from ..jit import JIT, U
from . import direct, phases, single_channel, winograd
from ..workspace import workspace


# Columns per chunk while accounting: 16 MB, the MPE's column buffer.
PLAN_CHUNK_FLOATS = 4 << 20
# While accounting, images whose GEMM has at least this many multiply-adds go one at a time.
PLAN_PER_IMAGE_MACS = 1 << 24
# Columns per chunk on the host: 1 MB, within one core's L2 cache with the GEMM's other operands.
CACHE_CHUNK_FLOATS = 1 << 18
# ... but at least this many columns (images x plane), below which BLAS runs far under its peak
# (ResNet-50's 7x7 maps: one image's 49 columns made its 3x3 convolutions 1.4x slower) and
# each chunk's Python calls cost too much next to its GEMMs (CIFAR10-quick's conv2, 256
# columns an image: chunks of two made its training step 4-5 % faster, the GEMMs as fast).
MIN_CHUNK_COLUMNS = 512
# A run of a weight gradient's chunks with at least this many columns may sum its transpose
# (see ``_RunSums``): ResNet-50's 28x28 stage (784 a run at batch 8) gains 10%, its 14x14
# stage (196) loses.
TRANSPOSED_SUM_COLUMNS = 512


def conv_out_size(size, kernel, pad, stride, dilation):
    """Caffe's convolution output size (floor rounding)."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


@dataclass(frozen=True)
class Window:
    """A convolution's geometry: (h, w) pairs of kernel, pad, stride, dilation; channel groups."""

    kernel: tuple
    pad: tuple = (0, 0)
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    group: int = 1

    def output_hw(self, height, width):
        return tuple(conv_out_size(size, *axis) for size, axis in
                     zip((height, width), zip(self.kernel, self.pad, self.stride, self.dilation)))

    @property
    def pointwise(self):
        """1x1, stride 1, no padding: an image is its own column matrix."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.pad == (0, 0)


def im2col(x, kernel, pad, stride, dilation, cols):
    """Unfold x (N, C, H, W) into cols (C*kh*kw, N*out_h*out_w).

    A unit is one image's segment of one row of cols (u = row * N + n), so even
    a single image's few rows spread over the whole mesh.
    """
    out_h = conv_out_size(x.shape[2], kernel[0], pad[0], stride[0], dilation[0])
    out_w = conv_out_size(x.shape[3], kernel[1], pad[1], stride[1], dilation[1])
    n_img, _, _, width = x.shape
    plane = out_h * out_w

    def unfold(row_lo, row_hi, n_lo, n_hi):
        images, target = x, cols
        if n_hi - n_lo < n_img:
            # Part of one row: the kernel unfolds images n_lo..n_hi as a batch of their
            # own into a view of cols shifted so that their row lands on their segments.
            images, batch = x[n_lo:n_hi], n_hi - n_lo
            start = (row_lo * (n_img - batch) + n_lo) * plane
            target = cols.reshape(-1)[start:start + row_hi * batch * plane].reshape(
                row_hi, batch * plane)
        im2col_kernel(images, kernel[0], kernel[1], pad[0], pad[1], stride[0], stride[1],
                      dilation[0], dilation[1], out_h, out_w, target, row_lo, row_hi)

    def run(lo, hi):
        for block in _unit_blocks(lo, hi, n_img):
            unfold(*block)
    # A unit needs one input row per output row.
    scheduler.units("im2col", cols.shape[0] * n_img, out_h * width * x.itemsize,
                    plane * x.itemsize, 0, run)
    return cols


def col2im(cols, kernel, pad, stride, dilation, dx):
    """Fold cols back into dx (N, C, H, W), summing overlaps; dx is overwritten.

    A unit is one (channel, image) plane of dx (u = c * N + n), summed from its
    segments of the channel's kernel-window rows of cols.
    """
    out_h = conv_out_size(dx.shape[2], kernel[0], pad[0], stride[0], dilation[0])
    out_w = conv_out_size(dx.shape[3], kernel[1], pad[1], stride[1], dilation[1])
    n_img, channels, height, width = dx.shape
    taps = kernel[0] * kernel[1]
    plane = out_h * out_w

    def run(lo, hi):
        for block in _unit_blocks(lo, hi, n_img):
            col2im_kernel(cols, kernel[0], kernel[1], pad[0], pad[1], stride[0],
                          stride[1], dilation[0], dilation[1], out_h, out_w, dx, *block)
    scheduler.units("col2im", channels * n_img, taps * plane * cols.itemsize,
                    height * width * dx.itemsize, taps * plane, run)
    return dx


def _unit_blocks(lo, hi, images):
    """Units lo..hi, u = outer * images + n, as (outer_lo, outer_hi, n_lo, n_hi) blocks:
    part of the first outer index, the whole ones, part of the last."""
    if hi <= lo:
        return []
    first, n_first = divmod(lo, images)
    last, n_last = divmod(hi, images)
    if first == last:
        return [(first, first + 1, n_first, n_last)]
    blocks = []
    if n_first:
        blocks.append((first, first + 1, n_first, images))
        first += 1
    if last > first:
        blocks.append((first, last, 0, images))
    if n_last:
        blocks.append((last, last + 1, 0, n_last))
    return blocks


def convolve(x, weight, window, y=None, top_diff=None, weight_diff=None):
    """``y = weight * x`` (overwritten) and/or ``weight_diff += top_diff (x) x``.

    Both need x's columns, so deconvolution's backward (bottom gradient and
    weight gradient) unfolds its top gradient once for the two.  ``y`` and
    ``top_diff`` are (N, O, out_h, out_w); ``weight`` is (O, C/G, kh, kw).
    """
    engine = _framed_engine(window, x.shape[1], weight.shape[0], window.output_hw(*x.shape[2:]))
    if engine is not None:
        images = _framed(x, window)
        if y is not None:
            engine.convolve(images, weight, y)
        if weight_diff is not None:
            engine.accumulate_weight_grad(images, top_diff, weight_diff)
        return
    tiling = _winograd_tiling(window, x.shape[1], weight.shape[0],
                              window.output_hw(*x.shape[2:]), x.shape[0])
    if tiling is not None:
        if y is not None:
            winograd.convolve(tiling, x, weight, window.pad, y, window.group)
        if weight_diff is not None:
            winograd.accumulate_weight_grad(tiling, x, top_diff, window.pad, weight_diff,
                                            window.group)
        return
    groups = _grouped(weight, window.group)
    plane = _plane(x, window)
    chunks = _chunks(x.shape[0], groups.shape[2] * window.group, plane, groups[0].size * plane)
    sums = _RunSums(weight_diff, window.group, x.shape[0] * plane // _run_count(chunks))

    def chunk(lane, run, lo, hi):
        columns = _columns(x, lo, hi, window, lane)
        if y is not None:
            _multiply_into(groups, columns, y, lo, hi, lane)
        if weight_diff is not None:
            sums.accumulate(run, _rows(top_diff, lo, hi, window.group, lane), columns)
    scheduler.lanes(chunks, chunk, sums.runs())
    sums.reduce()


def convolve_transpose(dy, weight, window, dx=None, x=None, weight_diff=None):
    """``dx = weight^T * dy`` folded into images (overwritten) and/or ``weight_diff += dy (x) x``.

    Convolution's backward: both need dy in rows.  ``dx`` and ``x`` are
    (N, C, H, W) with ``window.output_hw(H, W)`` equal to dy's plane.
    """
    engine = _framed_engine(window, weight.shape[1] * window.group, weight.shape[0],
                            dy.shape[2:])
    if weight_diff is not None and engine is not None:
        engine.accumulate_weight_grad(_framed(x, window), dy, weight_diff)
        weight_diff = None
    if _fast_paths[0] and dx is not None and direct.applies_transpose(
            window, weight.shape[1], weight.shape[0], dx.shape[2:]):
        direct.convolve(_framed(dy, direct.turned(window)), weight, dx, flip=True)
        dx = None
    if dx is None and weight_diff is None:
        return
    tiling = _winograd_tiling(window, weight.shape[1] * window.group, weight.shape[0],
                              dy.shape[2:], dy.shape[0])
    if tiling is not None:
        if weight_diff is not None:
            winograd.accumulate_weight_grad(tiling, x, dy, window.pad, weight_diff,
                                            window.group)
        if dx is not None:
            winograd.convolve(tiling, dy, weight, tuple(2 - p for p in window.pad), dx,
                              window.group, flip=True)
        return
    groups = _grouped(weight, window.group)
    plane = dy.shape[2] * dy.shape[3]
    chunks = _chunks(dy.shape[0], groups.shape[2] * window.group, plane, groups[0].size * plane)
    sums = _RunSums(weight_diff, window.group, dy.shape[0] * plane // _run_count(chunks))

    def chunk(lane, run, lo, hi):
        dy_rows = _rows(dy, lo, hi, window.group, lane)
        if weight_diff is not None:
            sums.accumulate(run, dy_rows, _columns(x, lo, hi, window, lane))
        if dx is not None:
            _fold_into(groups, dy_rows, dx, lo, hi, window, lane)
    scheduler.lanes(chunks, chunk, sums.runs())
    sums.reduce()


_fast_paths = [True]


class _Engine(NamedTuple):
    """A convolution's forward and filter gradient over its zero-framed images."""

    convolve: Callable            # (framed, weight, y)
    accumulate_weight_grad: Callable   # (framed, dy, weight_diff)


def _framed_engine(window, in_channels, out_channels, out_hw):
    """What convolves the zero-framed images for a convolution's forward and filter
    gradient (``single_channel``, ``direct``, or ``direct`` over the phase images of a
    strided one), or None."""
    if not _fast_paths[0]:
        return None
    if single_channel.applies(window, in_channels):
        return single_channel
    if direct.applies(window, in_channels, out_channels, out_hw):
        return direct
    split = phases.plan(window, in_channels, out_channels, out_hw)
    if split is not None:
        return _Engine(partial(phases.convolve, split),
                       partial(phases.accumulate_weight_grad, split))
    return None


def _winograd_tiling(window, in_channels, out_channels, out_hw, images):
    """The Winograd tiling a convolution goes by (``winograd.tiling``), or None."""
    if not _fast_paths[0]:
        return None
    return winograd.tiling(window, in_channels, out_channels, out_hw, images)


@contextmanager
def im2col_only():
    """Every convolution by im2col + GEMM meanwhile (no single-channel, direct or Winograd
    path): the scaling model's reproduction of the paper models the paper's Caffe on
    SW26010, which convolved that way."""
    before = _fast_paths[0]
    _fast_paths[0] = False
    try:
        yield
    finally:
        _fast_paths[0] = before


def _grouped(weight, group):
    """Weights as (G, O/G, R) matrices."""
    return weight.reshape(group, weight.shape[0] // group, -1)


def _plane(x, window):
    out_h, out_w = window.output_hw(x.shape[2], x.shape[3])
    return out_h * out_w


def _chunks(n_images, rows, plane, macs_per_image):
    """(lo, hi) image ranges: the core group's chunks while accounting, else cache-sized ones."""
    floats = max(rows * plane, 1)
    if accounting.active():
        step = 1 if macs_per_image >= PLAN_PER_IMAGE_MACS else max(1, PLAN_CHUNK_FLOATS // floats)
    else:
        fitting = max(CACHE_CHUNK_FLOATS // floats, -(-MIN_CHUNK_COLUMNS // max(plane, 1)))
        step = max(1, min(fitting, -(-n_images // scheduler.gemm_threads())))
        return scheduler.balanced_chunks(n_images, step)
    return [(lo, min(lo + step, n_images)) for lo in range(0, n_images, step)]


def _run_count(chunks):
    """How many runs ``scheduler.lanes`` makes of ``chunks``."""
    return max(1, min(scheduler.RUNS, len(chunks)))


def _columns(x, lo, hi, window, lane):
    """(G, R, nb*plane) columns of images x[lo:hi]: x itself for one image of a
    pointwise convolution (read-only then), else the lane's column buffer."""
    nb, channels = hi - lo, x.shape[1]
    plane = _plane(x, window)
    rows = channels * window.kernel[0] * window.kernel[1]
    if nb == 1 and window.pointwise:
        return x[lo].reshape(window.group, -1, plane)
    cols = workspace(("columns", lane), (rows, nb * plane))
    images, pad = x[lo:hi], window.pad
    if _pads_on_host(window):
        images, pad = _padded(images, pad, lane), (0, 0)
    im2col(images, window.kernel, pad, window.stride, window.dilation, cols)
    return cols.reshape(window.group, -1, nb * plane)


def _pads_on_host(window):
    """Whether to pad images before unfolding (and fold into padded images).

    On the host a padded copy of a chunk is small next to its columns, and
    with it im2col and col2im copy whole runs with no bounds to check.  The
    core group's figures (while accounting) keep padding inside im2col/col2im,
    where it costs no extra DMA.
    """
    return window.pad != (0, 0) and not accounting.active()


def _framed(x, window):
    """The whole batch x framed by the window's padding (a scratch copy), or x itself."""
    return _padded(x, window.pad, 0) if window.pad != (0, 0) else x


def _padded_shape(images, pad):
    n_img, channels, height, width = images.shape
    return (n_img, channels, height + 2 * pad[0], width + 2 * pad[1])


def _padded(images, pad, lane):
    """images framed by pad zeros, in the lane's padding buffer."""
    out = workspace(("padded", lane), _padded_shape(images, pad))
    _copy_planes("pad", images, (0, 0), out, pad, zero_first=True)
    return out


def _unpad_into(padded, pad, out):
    _copy_planes("unpad", padded, pad, out, (0, 0), zero_first=False)


def _copy_planes(kernel, src, src_corner, dst, dst_corner, zero_first):
    """Copy the smaller of each (image, channel) plane pair between src and dst at the corners."""
    def run(lo, hi):
        copy_planes_kernel(src, *src_corner, dst, *dst_corner, zero_first, lo, hi)
    scheduler.units(kernel, src.shape[0] * src.shape[1], src[0, 0].nbytes, dst[0, 0].nbytes, 0,
                    run)


def _rows(array, lo, hi, group, lane):
    """(G, O/G, nb*plane) rows of a top-shaped array's images lo..hi: a view for
    one image, else a copy in image order within each row (the lane's row buffer)."""
    nb, channels = hi - lo, array.shape[1]
    plane = array.shape[2] * array.shape[3]
    if nb == 1:
        return array[lo].reshape(group, -1, plane)
    rows = workspace(("rows", lane), (group, channels // group, nb * plane))
    rows.reshape(group, -1, nb, plane)[...] = (
        array[lo:hi].reshape(nb, group, -1, plane).transpose(1, 2, 0, 3))
    return rows


def _multiply_into(groups, columns, y, lo, hi, lane):
    """y[lo:hi] = per group weight @ columns, put in image order."""
    nb, plane = hi - lo, y.shape[2] * y.shape[3]
    group = groups.shape[0]
    if nb == 1:
        out = y[lo].reshape(group, -1, plane)
        for g in range(group):
            scheduler.gemm(groups[g], columns[g], 1.0, 0.0, out[g])
        return
    rows = workspace(("rows", lane), (group, groups.shape[1], nb * plane))
    for g in range(group):
        scheduler.gemm(groups[g], columns[g], 1.0, 0.0, rows[g])
    y[lo:hi].reshape(nb, group, -1, plane)[...] = (
        rows.reshape(group, -1, nb, plane).transpose(2, 0, 1, 3))


def _fold_into(groups, dy_rows, dx, lo, hi, window, lane):
    """dx[lo:hi] = col2im(weight^T @ dy_rows), or the product itself for one
    image of a pointwise convolution."""
    nb, channels = hi - lo, dx.shape[1]
    plane = dy_rows.shape[2] // nb
    if nb == 1 and window.pointwise:
        out = dx[lo].reshape(window.group, -1, plane)
        for g in range(window.group):
            scheduler.gemm(groups[g].T, dy_rows[g], 1.0, 0.0, out[g])
        return
    rows = channels * window.kernel[0] * window.kernel[1]
    cols = workspace(("columns", lane), (rows, nb * plane))
    grouped_cols = cols.reshape(window.group, -1, nb * plane)
    for g in range(window.group):
        scheduler.gemm(groups[g].T, dy_rows[g], 1.0, 0.0, grouped_cols[g])
    if not _pads_on_host(window):
        col2im(cols, window.kernel, window.pad, window.stride, window.dilation, dx[lo:hi])
        return
    padded = workspace(("padded", lane), _padded_shape(dx[lo:hi], window.pad))
    col2im(cols, window.kernel, (0, 0), window.stride, window.dilation, padded)
    _unpad_into(padded, window.pad, dx[lo:hi])


class _RunSums:
    """A weight gradient summed per run of chunks (see ``scheduler.lanes``): each
    run adds into a buffer of its own (run 0 into the gradient itself when it can),
    and the buffers are added in run order at the end, so the sum does not depend
    on which lane took which run.

    A run's sum of ``dy_rows @ columns.T`` has O/G rows and R = C/G*kh*kw
    columns.  When R is the longer side and a run's GEMMs are long (K, the
    run's columns, at least ``TRANSPOSED_SUM_COLUMNS``) the run sums the
    transpose, ``columns @ dy_rows.T``, instead: BLAS runs a GEMM faster with
    the long side as C's rows (a 32 x 800 weight gradient of CIFAR10-quick's
    conv2, K = 256: 59 GFLOP/s one way, 91 the other), and adding a transposed
    sum back costs about as much as 50-170 more of K.
    """

    def __init__(self, weight_diff, group, columns_per_run):
        self.grad = None if weight_diff is None else _grouped(weight_diff, group)
        self.transposed = (self.grad is not None and self.grad.shape[2] > self.grad.shape[1]
                           and columns_per_run >= TRANSPOSED_SUM_COLUMNS)
        self.partial = {}

    def runs(self):
        """How many runs to cut the chunks into (see ``scheduler.weight_sum_runs``)."""
        return scheduler.weight_sum_runs(0 if self.grad is None else self.grad.size)

    def accumulate(self, run, dy_rows, columns):
        """The run's sum += dy_rows[g] @ columns[g].T for each group g."""
        target = self._target(run)
        for g in range(target.shape[0]):
            if self.transposed:
                scheduler.gemm(columns[g], dy_rows[g].T, 1.0, 1.0, target[g])
            else:
                scheduler.gemm(dy_rows[g], columns[g].T, 1.0, 1.0, target[g])

    def _target(self, run):
        if run == 0 and not self.transposed:
            return self.grad
        if run not in self.partial:
            shape = self.grad.transpose(0, 2, 1).shape if self.transposed else self.grad.shape
            buffer = workspace(("weight_diff", run), shape)
            buffer[...] = 0.0
            self.partial[run] = buffer
        return self.partial[run]

    def reduce(self):
        for run in sorted(self.partial):
            partial = self.partial[run]
            self.grad += partial.transpose(0, 2, 1) if self.transposed else partial


@numba.njit(inline="always")
def _inside(first, stride, size, count):
    """[lo, hi) of the outputs o in [0, count) whose input first + o*stride is in [0, size)."""
    lo = 0 if first >= 0 else (-first + stride - 1) // stride
    hi = 0 if first >= size else (size - first + stride - 1) // stride
    return min(lo, count), max(min(lo, count), min(hi, count))


@numba.njit(inline="always")
def _fill_zero(flat, start, count):
    for i in range(U(count)):
        flat[start + i] = 0.0


@numba.njit(**JIT)
def im2col_kernel(x, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, cols, lo, hi):
    """x (N, C, H, W) -> cols (C*kh*kw, N*out_h*out_w), zero where padded; rows lo..hi.

    With padding the rows are first zeroed in one pass; then each image's
    output row copies its run of inputs inside the image.  (Zeroing the few padded columns of each
    run separately costs 4x more: LLVM turns every such loop into a memset call.)
    """
    n_img, channels, height, width = x.shape
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    plane = out_h * out_w
    if ph or pw:
        _fill_zero(dst, U(lo * n_img * plane), (hi - lo) * n_img * plane)
    for row in range(lo, hi):
        c = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        x0 = kj * dw - pw
        ox_lo, ox_hi = _inside(x0, sw, width, out_w)
        run = U(ox_hi - ox_lo)
        step = U(sw)
        for n in range(n_img):
            image_row = U(row * n_img * plane + n * plane)
            for oy in range(out_h):
                iy = oy * sh - ph + ki * dh
                d = image_row + U(oy * out_w)
                if iy < 0 or iy >= height:
                    continue
                s = U(((n * channels + c) * height + iy) * width + x0 + ox_lo * sw)
                t = d + U(ox_lo)
                if sw == 1:
                    for i in range(run):
                        dst[t + i] = src[s + i]
                else:
                    for i in range(run):
                        dst[t + i] = src[s + i * step]


@numba.njit(**JIT)
def col2im_kernel(cols, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, dx, c_lo, c_hi, n_lo, n_hi):
    """Scatter-add cols (C*kh*kw, N*out_h*out_w) into dx (N, C, H, W) (overwritten); the
    planes of channels c_lo..c_hi of images n_lo..n_hi."""
    n_img, channels, height, width = dx.shape
    src = cols.reshape(-1)
    dst = dx.reshape(-1)
    plane = out_h * out_w
    step = U(sw)
    for c in range(c_lo, c_hi):
        for n in range(n_lo, n_hi):
            image = U((n * channels + c) * height * width)
            _fill_zero(dst, image, height * width)
            for ki in range(kh):
                for kj in range(kw):
                    row = (c * kh + ki) * kw + kj
                    x0 = kj * dw - pw
                    ox_lo, ox_hi = _inside(x0, sw, width, out_w)
                    run = U(ox_hi - ox_lo)
                    for oy in range(out_h):
                        iy = oy * sh - ph + ki * dh
                        if iy < 0 or iy >= height:
                            continue
                        s = U(row * n_img * plane + n * plane + oy * out_w + ox_lo)
                        t = image + U(iy * width + x0 + ox_lo * sw)
                        if sw == 1:
                            for i in range(run):
                                dst[t + i] += src[s + i]
                        else:
                            for i in range(run):
                                dst[t + i * step] += src[s + i]


@numba.njit(**JIT)
def copy_planes_kernel(src, src_y, src_x, dst, dst_y, dst_x, zero_first, lo, hi):
    """dst[p, dst_y + i, dst_x + j] = src[p, src_y + i, src_x + j] over the smaller plane;
    planes p in lo..hi of (N, C, H, W) arrays, dst zeroed first if asked.

    Padding copies images into the middle of zeroed larger planes; unpadding
    copies the middle back out.
    """
    src_h, src_w = src.shape[2], src.shape[3]
    dst_h, dst_w = dst.shape[2], dst.shape[3]
    height, width = min(src_h, dst_h), min(src_w, dst_w)
    source = src.reshape(-1)
    target = dst.reshape(-1)
    if zero_first:
        _fill_zero(target, U(lo * dst_h * dst_w), (hi - lo) * dst_h * dst_w)
    for plane in range(lo, hi):
        for i in range(height):
            s = U((plane * src_h + src_y + i) * src_w + src_x)
            t = U((plane * dst_h + dst_y + i) * dst_w + dst_x)
            for j in range(U(width)):
                target[t + j] = source[s + j]
