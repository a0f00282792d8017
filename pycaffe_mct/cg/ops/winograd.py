"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3).

im2col + GEMM spends 9 multiply-adds per input channel on each output; F(m x m,
3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) computes an m x m block of outputs from an (m+2) x (m+2) block of inputs
with (m+2)^2: the input tile d and the filter g are taken to the "transform
domain",

    V = B^T d B,  U = G g G^T,  y = A^T (U . V) A,

where the element-wise product, summed over input channels, is (m+2)^2 GEMMs
(O x C) @ (C x tiles), one per transform position xi.  F(2x2, 3x3) spends
2.25x fewer multiply-adds than the direct sum, F(4x4, 3x3) 4x fewer, and each
reads fewer transformed values per output (36 for 16 outputs against 16 for
4); the price is more rounding (F(2, 3)'s coefficients are 0, +-1 and +-1/2,
F(4, 3)'s reach 8 and 1/24: relative errors of ~1e-6 against ~1e-7 in float32)
and coarser tiles at the edges (a 14x14 map takes 16x16 outputs of 4x4 tiles).
``tiling`` chooses per shape.

The gradients are the same three steps:

* the input gradient of a 3x3 stride-1 convolution with padding p is itself
  a 3x3 stride-1 convolution of the top gradient with padding 2 - p and the
  filters turned by 180 degrees, input and output channels swapped;
* the filter gradient is, in the transform domain, dU[xi] = sum over tiles of
  (A dY A^T)[xi] (O x tiles) @ V[xi]^T (tiles x C), and dg = G^T dU G.

Tiles at the bottom and right edge of an output whose side is not a multiple
of m reach past the image: inputs there read as zeros and outputs there are
dropped (their gradients are zeros).  The images go in cache-sized chunks over
the host threads' lanes as in ``convolution``; filter-gradient sums are kept
per run of chunks and added in run order, so they do not depend on the thread
count.  Each kernel serves both tilings: it takes the tile's side (4 or 6) and
calls that tiling's unrolled transform of one tile.
"""
from dataclasses import dataclass

import numba
import numpy as np

from .. import accounting, scheduler
from ..jit import JIT, U
from ..workspace import workspace


@dataclass(frozen=True)
class Tiling:
    """F(m x m, 3x3): ``out`` = m, output tiles of m x m from input tiles of ``side``^2 =
    (m+2)^2 values; ``flops`` are each transform's per tile (filters, input, top gradient,
    output, filter gradient), for the core group's accounting."""

    out: int
    flops: tuple

    @property
    def side(self):
        return self.out + 2

    @property
    def positions(self):
        return self.side * self.side

    def tiles_hw(self, out_h, out_w):
        """Output tiles covering an out_h x out_w output."""
        return -(-out_h // self.out), -(-out_w // self.out)


F2 = Tiling(2, (28, 32, 12, 24, 24))
F4 = Tiling(4, (135, 170, 140, 140, 126))

# Floats between the rows of transform positions beyond their data: one cache line.
POSITION_PADDING = 16
# Floats of a chunk's transformed inputs and products on the host: within one core's L2 cache.
CACHE_CHUNK_FLOATS = 1 << 18
# ... but at least this many tiles a chunk, below which the GEMMs run far under BLAS's peak
# (F(4x4, 3x3) on ResNet-50's 28x28 maps: 128 tiles a chunk made it 10-20 % slower, 512 were
# as fast as 256 but held 50 MB more at batch 32).
MIN_CHUNK_TILES = 256
# ... and at most this many floats of transformed tiles a chunk: each lane holds three such
# buffers (ResNet-50's 14x14 stage at batch 32 ran as fast in chunks of 8 images as of 16).
MAX_CHUNK_FLOATS = 3 << 19
# Scratch slots: a layer convolves by Winograd or by im2col, never both at once, so Winograd
# takes im2col's slots (``convolution``): transformed inputs in its columns, products in its
# rows, top-gradient tiles in its padding, per-run filter sums in its per-run weight-gradient
# sums, and the transformed filters (never alive with filter sums) in run 0's.  Shared,
# they held 64 MB less at ResNet-50 batch 32.
FILTERS_SLOT = ("weight_diff", 0)
# Tiles per chunk while accounting: the MPE's 16 MB buffer of transformed inputs.
PLAN_CHUNK_FLOATS = 4 << 20


def tiling(window, in_channels, out_channels, out_hw, images):
    """The tiling a convolution of ``images`` images goes by, or None for none.

    Winograd takes 3x3, stride 1, no dilation, padding at most 2 (its input
    gradient pads by 2 - p), enough channels a group for the GEMMs to pay for the
    transforms, and an output (``out_hw``) of at least ``MIN_OUTPUT_SIDE`` rows and
    columns.  Measured, CPU ms forward / backward: 32 channels on 16x16 maps lose,
    8.0 / 18.4 by im2col against 9.5 / 22.1; 64 on 28x28 win, 12.1 / 25.7 against
    9.4 / 22.6 (Zen 4); on a Xeon (AVX-512) 384 on 13x13 maps win, 19.1 / 39.0
    against 16.2 / 35.9, and 512 on 7x7 lose, 7.4 / 15.3 against 9.6 / 27.5.

    F(4x4, 3x3) where the batch has at least ``F4_MIN_TILES`` of its 4x4 tiles and
    they compute at most ``F4_MAX_WASTE`` more outputs than the map has: fewer tiles
    make its GEMMs too thin for the multiply-adds it saves, and AlexNet's 13x13 maps
    (16x16 computed, 51 % more) lost.  ``python bench/bench_winograd.py`` (Zen 4, 2
    threads; docs/benchmarks.md): F(2x2) / F(4x4) time 1.34-1.49 on ResNet-50's 28x28
    stage at batch 8 (392 tiles), 0.99-1.24 on its 14x14 stage at batch 32 (512),
    0.89-0.95 on AlexNet's conv4 at batch 16; 256 channels on 14x14 at batch 8 (128
    tiles): 14.2 / 14.2 / 12.4 ms forward / filter / input gradient by F(2x2) against
    17.9 / 15.7 / 15.9.
    """
    if not (window.kernel == (3, 3) and window.stride == (1, 1)
            and window.dilation == (1, 1) and max(window.pad) <= 2
            and min(in_channels, out_channels) // window.group >= MIN_CHANNELS
            and min(out_hw) >= MIN_OUTPUT_SIDE):
        return None
    tiles_h, tiles_w = F4.tiles_hw(*out_hw)
    covered = F4.out * tiles_h * F4.out * tiles_w
    enough = images * tiles_h * tiles_w >= F4_MIN_TILES
    return F4 if enough and covered <= (1 + F4_MAX_WASTE) * out_hw[0] * out_hw[1] else F2


# Fewer input or output channels a group than this make the transform-domain GEMMs too thin.
MIN_CHANNELS = 64
# Outputs with fewer rows or columns than this waste too much of their tiles (7x7 maps
# compute 8x8, 31 % more) and give too few tiles an image for the GEMMs.
MIN_OUTPUT_SIDE = 8
# F(4x4, 3x3) takes a batch of at least this many of its tiles ...
F4_MIN_TILES = 256
# ... that compute at most this share more outputs than the map has (14x14: 31 %).
F4_MAX_WASTE = 0.35


def convolve(tiling, x, weight, pad, y, group=1, flip=False):
    """y (N, O, out_h, out_w) = the 3x3 stride-1 convolution of x (N, C, H, W) in
    ``group`` channel groups, padding ``pad``, by ``tiling``; weight is (O, C/G, 3, 3),
    or with ``flip`` (C, O/G, 3, 3) used turned by 180 degrees with its two channel axes
    swapped (the input gradient's filters)."""
    tiles = tiling.tiles_hw(y.shape[2], y.shape[3])
    inputs, outputs = x.shape[1] // group, y.shape[1] // group
    chunks = _chunks(tiling, x.shape[0], max(inputs, outputs), tiles)
    block = weight.shape[0] // group
    for g in range(group):
        filters = _positions(tiling, FILTERS_SLOT, outputs * inputs)
        _transform_filters(tiling, weight[g * block:(g + 1) * block], flip, filters, inputs)
        transformed = _matrices(filters, outputs)

        def chunk(lane, run, lo, hi, g=g, transformed=transformed):
            tiles_in = _matrices(_input_tiles(tiling, x, (g * inputs, inputs), lo, hi, pad,
                                              tiles, lane), inputs)
            products = _positions(tiling, ("rows", lane), outputs * tiles_in.shape[2])
            for xi, matrix in enumerate(_matrices(products, outputs)):
                scheduler.gemm(transformed[xi], tiles_in[xi], 1.0, 0.0, matrix)
            _output_tiles(tiling, products, y[lo:hi], (g * outputs, outputs))
        scheduler.lanes(chunks, chunk)


def accumulate_weight_grad(tiling, x, dy, pad, weight_diff, group=1):
    """weight_diff (O, C/G, 3, 3) += the filter gradient of the convolution of x by pad."""
    tiles = tiling.tiles_hw(dy.shape[2], dy.shape[3])
    inputs, outputs = x.shape[1] // group, dy.shape[1] // group
    chunks = _chunks(tiling, x.shape[0], max(inputs, outputs), tiles)
    for g in range(group):
        sums = {}

        def chunk(lane, run, lo, hi, g=g, sums=sums):
            tiles_in = _matrices(_input_tiles(tiling, x, (g * inputs, inputs), lo, hi, pad,
                                              tiles, lane), inputs)
            gradients = _matrices(_gradient_tiles(tiling, dy, (g * outputs, outputs), lo, hi,
                                                  tiles, lane), outputs)
            if run not in sums:
                sums[run] = _positions(tiling, ("weight_diff", run), outputs * inputs)
                sums[run][...] = 0.0
            for xi, matrix in enumerate(_matrices(sums[run], outputs)):
                scheduler.gemm(gradients[xi], tiles_in[xi].T, 1.0, 1.0, matrix)
        scheduler.lanes(chunks, chunk,
                        scheduler.weight_sum_runs(tiling.positions * outputs * inputs))
        total = sums.pop(min(sums))
        for run in sorted(sums):
            total += sums[run]
        _accumulate_filter_grad(tiling, total, weight_diff[g * outputs:(g + 1) * outputs])


def _positions(tiling, slot, floats):
    """A (positions, floats + POSITION_PADDING) scratch array: a row per transform position.

    A tile's values go to different rows; were the rows a multiple of 4 KiB apart
    (ResNet-50's 56x56 stage: 196 KiB), all of them would fall in one set of the L1
    cache and evict each other: the padding keeps them in different sets (the
    input transform ran 3x slower without it)."""
    return workspace(slot, (tiling.positions, floats + POSITION_PADDING))


def _matrices(positions, rows):
    """The (rows, columns) matrices in the rows of a ``_positions`` array (views)."""
    floats = positions.shape[1] - POSITION_PADDING
    return positions[:, :floats].reshape(positions.shape[0], rows, floats // rows)


def _chunks(tiling, n_images, channels, tiles):
    """(lo, hi) image ranges whose transformed tiles fit a core's cache (the core group's
    buffer while accounting), spread over the host threads."""
    per_image = max(tiling.positions * channels * tiles[0] * tiles[1], 1)
    if accounting.active():
        step = max(1, PLAN_CHUNK_FLOATS // per_image)
    else:
        fitting = max(CACHE_CHUNK_FLOATS // per_image,
                      -(-MIN_CHUNK_TILES // max(tiles[0] * tiles[1], 1)))
        step = max(1, min(fitting, MAX_CHUNK_FLOATS // per_image,
                          -(-n_images // scheduler.gemm_threads())))
        return scheduler.balanced_chunks(n_images, step)
    return [(lo, min(lo + step, n_images)) for lo in range(0, n_images, step)]


# ---- the transforms, as kernels over independent units -------------------------------

def _transform_filters(tiling, weight, flip, out, inputs):
    """out (``_positions``, O x C) = G g G^T of each filter; a unit is one filter (each
    writes its own column: a large call is spread over the host threads)."""
    outputs = (out.shape[1] - POSITION_PADDING) // inputs

    def run(lo, hi):
        filter_transform_kernel(weight, flip, inputs, tiling.side, out, lo, hi)
    scheduler.units("winograd_filters", outputs * inputs, 9 * weight.itemsize,
                    tiling.positions * out.itemsize, tiling.flops[0], run, spread=True)


def _input_tiles(tiling, x, channels, lo, hi, pad, tiles, lane):
    """The transformed input tiles of images x[lo:hi], channels ``(first, count)``
    (``_positions``, count x nb*tiles each); a unit is one (image, channel) plane."""
    images = x[lo:hi]
    count = tiles[0] * tiles[1]
    out = _positions(tiling, ("columns", lane), channels[1] * images.shape[0] * count)

    def run(a, b):
        input_transform_kernel(images, *channels, pad[0], pad[1], tiles[0], tiles[1],
                               tiling.side, out, a, b)
    scheduler.units("winograd_inputs", images.shape[0] * channels[1], x[0, 0].nbytes,
                    tiling.positions * count * out.itemsize, tiling.flops[1] * count, run)
    return out


def _gradient_tiles(tiling, dy, channels, lo, hi, tiles, lane):
    """The transformed top-gradient tiles (A dY A^T) of images lo..hi, channels
    ``(first, count)`` (``_positions``, count x nb*tiles each)."""
    images = dy[lo:hi]
    count = tiles[0] * tiles[1]
    out = _positions(tiling, ("padded", lane), channels[1] * images.shape[0] * count)

    def run(a, b):
        gradient_transform_kernel(images, *channels, tiles[0], tiles[1], tiling.side, out,
                                  a, b)
    scheduler.units("winograd_gradients", images.shape[0] * channels[1], dy[0, 0].nbytes,
                    tiling.positions * count * out.itemsize, tiling.flops[2] * count, run)
    return out


def _output_tiles(tiling, products, y, channels):
    """Channels ``(first, count)`` of y (nb, O, out_h, out_w) = A^T M A of each tile of
    products (``_positions``)."""
    tiles = tiling.tiles_hw(y.shape[2], y.shape[3])
    count = tiles[0] * tiles[1]

    def run(a, b):
        output_transform_kernel(products, tiles[0], tiles[1], tiling.side, y, *channels, a, b)
    scheduler.units("winograd_outputs", y.shape[0] * channels[1],
                    tiling.positions * count * products.itemsize, y[0, 0].nbytes,
                    tiling.flops[3] * count, run)


def _accumulate_filter_grad(tiling, sums, weight_diff):
    """weight_diff[o, c] += G^T dU G of the summed transform-domain gradients
    (``_positions``, O x C); each unit adds to its own filter, so a large call is spread."""
    def run(lo, hi):
        filter_grad_kernel(sums, tiling.side, weight_diff, lo, hi)
    scheduler.units("winograd_filter_grads", weight_diff.shape[0] * weight_diff.shape[1],
                    tiling.positions * sums.itemsize, 9 * weight_diff.itemsize,
                    tiling.flops[4], run, spread=True)


# ---- one-dimensional transforms: F(2, 3) on 4-vectors, F(4, 3) on 6-vectors ------------
# F(4, 3)'s matrices are Lavin and Gray's, from the points 0, 1, -1, 2, -2 and infinity.

@numba.njit(inline="always")
def _g_f2(a0, a1, a2):
    """G (a0, a1, a2): F(2x2, 3x3)'s filter transform of a 3-vector."""
    half = np.float32(0.5)
    return a0, half * (a0 + a1 + a2), half * (a0 - a1 + a2), a2


@numba.njit(inline="always")
def _g_f4(a0, a1, a2):
    """G (a0, a1, a2): F(4x4, 3x3)'s filter transform of a 3-vector."""
    sixth, twelfth, quarter = np.float32(1 / 6), np.float32(1 / 12), np.float32(0.25)
    even, odd = sixth * (a0 + a2), sixth * a1
    outer = np.float32(1 / 24) * a0 + sixth * a2
    return (quarter * a0, -(even + odd), odd - even,
            outer + twelfth * a1, outer - twelfth * a1, a2)


@numba.njit(inline="always")
def _bt_f2(a0, a1, a2, a3):
    """B^T (a0, a1, a2, a3): F(2x2, 3x3)'s input transform of a 4-vector."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@numba.njit(inline="always")
def _bt_f4(a0, a1, a2, a3, a4, a5):
    """B^T (a0 .. a5): F(4x4, 3x3)'s input transform of a 6-vector."""
    two, four, five = np.float32(2), np.float32(4), np.float32(5)
    ones, twos = a4 - four * a2, a4 - a2
    return (four * a0 - five * a2 + a4, ones - four * a1 + a3, ones + four * a1 - a3,
            twos + two * (a3 - a1), twos - two * (a3 - a1), four * a1 - five * a3 + a5)


@numba.njit(inline="always")
def _a_f2(p, q):
    """A (p, q): F(2x2, 3x3)'s output transform, transposed, of a 2-vector."""
    return p, p + q, p - q, -q


@numba.njit(inline="always")
def _a_f4(p0, p1, p2, p3):
    """A (p0 .. p3): F(4x4, 3x3)'s output transform, transposed, of a 4-vector."""
    two, four, eight = np.float32(2), np.float32(4), np.float32(8)
    even, odd = p0 + p2, p1 + p3
    far_even, far_odd = p0 + four * p2, two * p1 + eight * p3
    return p0, even + odd, even - odd, far_even + far_odd, far_even - far_odd, p3


@numba.njit(inline="always")
def _at_f2(m0, m1, m2, m3):
    """A^T (m0 .. m3): F(2x2, 3x3)'s output transform of a 4-vector."""
    return m0 + m1 + m2, m1 - m2 - m3


@numba.njit(inline="always")
def _at_f4(m0, m1, m2, m3, m4, m5):
    """A^T (m0 .. m5): F(4x4, 3x3)'s output transform of a 6-vector."""
    two, four, eight = np.float32(2), np.float32(4), np.float32(8)
    near_sum, near_diff, far_sum, far_diff = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return (m0 + near_sum + far_sum, near_diff + two * far_diff, near_sum + four * far_sum,
            near_diff + eight * far_diff + m5)


@numba.njit(inline="always")
def _gt_f2(u0, u1, u2, u3):
    """G^T (u0 .. u3): back from F(2x2, 3x3)'s transform domain to a filter's 3-vector."""
    half = np.float32(0.5)
    return u0 + half * (u1 + u2), half * (u1 - u2), half * (u1 + u2) + u3


@numba.njit(inline="always")
def _gt_f4(u0, u1, u2, u3, u4, u5):
    """G^T (u0 .. u5): back from F(4x4, 3x3)'s transform domain to a filter's 3-vector."""
    sixth, twelfth = np.float32(1 / 6), np.float32(1 / 12)
    near, far = u1 + u2, u3 + u4
    return (np.float32(0.25) * u0 - sixth * near + np.float32(1 / 24) * far,
            sixth * (u2 - u1) + twelfth * (u3 - u4), sixth * (far - near) + u5)


# ---- the kernels: a unit is a filter or an (image, channel) plane ------------------------

@numba.njit(inline="always")
def _store(dst, at, stride, values):
    """dst[at + k*stride] = values[k]: transform positions k of one tile."""
    for k in range(len(values)):
        dst[at] = values[k]
        at += stride


@numba.njit(inline="always")
def _filter_tile(g, side, dst, at, stride):
    """G g G^T of one 3x3 filter g, column by column, then row by row."""
    row = U(side) * stride
    if side == 4:
        c0, c1, c2 = _g_f2(g[0, 0], g[1, 0], g[2, 0]), _g_f2(g[0, 1], g[1, 1], g[2, 1]), \
            _g_f2(g[0, 2], g[1, 2], g[2, 2])
        for i in range(4):
            _store(dst, at + U(i) * row, stride, _g_f2(c0[i], c1[i], c2[i]))
    else:
        c0, c1, c2 = _g_f4(g[0, 0], g[1, 0], g[2, 0]), _g_f4(g[0, 1], g[1, 1], g[2, 1]), \
            _g_f4(g[0, 2], g[1, 2], g[2, 2])
        for i in range(6):
            _store(dst, at + U(i) * row, stride, _g_f4(c0[i], c1[i], c2[i]))


@numba.njit(**JIT)
def filter_transform_kernel(weight, flip, inputs, side, out, lo, hi):
    """out[xi, o * C + c] = (G g G^T)[xi] for units u = o * C + c in lo..hi, C = inputs;
    g = weight[o, c], or with flip weight[c, o] turned by 180 degrees; ``side`` is the
    tiling's (4: F(2x2, 3x3), 6: F(4x4, 3x3))."""
    stride = U(out.shape[1])
    dst = out.reshape(-1)
    for unit in range(lo, hi):
        o, c = unit // inputs, unit % inputs
        g = weight[c, o, ::-1, ::-1] if flip else weight[o, c]
        _filter_tile(g, side, dst, U(unit), stride)


@numba.njit(inline="always")
def _unit_offsets(unit, first, channels, all_channels, n_img, plane_size, count):
    """Where unit u = n * channels + c starts: its plane (channel first + c of image n) in
    the (N, all_channels, ...) array, and its first tile in a row of ``_positions``."""
    n, c = unit // channels, unit % channels
    return (U((n * all_channels + first + c) * plane_size),
            U(c * n_img * count + n * count))


@numba.njit(inline="always")
def _input_column_f2(src, at, w):
    """B^T of the 4 values down from src[at], w apart."""
    return _bt_f2(src[at], src[at + w], src[at + w + w], src[at + w + w + w])


@numba.njit(inline="always")
def _input_column_f4(src, at, w):
    """B^T of the 6 values down from src[at], w apart."""
    three = w + w + w
    return _bt_f4(src[at], src[at + w], src[at + w + w], src[at + three],
                  src[at + three + w], src[at + three + w + w])


@numba.njit(inline="always")
def _input_tile(src, first, width, side, dst, at, stride):
    """B^T d B of the side x side tile of src whose top left is src[first] (all inside
    the image): column by column, then row by row.

    Every offset is unsigned (a signed one, e.g. ``first + 1``, costs a
    wraparound check per load).
    """
    w, one, row = U(width), U(1), U(side) * stride
    if side == 4:
        c0, c1 = _input_column_f2(src, first, w), _input_column_f2(src, first + one, w)
        c2, c3 = (_input_column_f2(src, first + one + one, w),
                  _input_column_f2(src, first + one + one + one, w))
        for i in range(4):
            _store(dst, at + U(i) * row, stride, _bt_f2(c0[i], c1[i], c2[i], c3[i]))
    else:
        c0, c1 = _input_column_f4(src, first, w), _input_column_f4(src, first + one, w)
        c2, c3 = (_input_column_f4(src, first + one + one, w),
                  _input_column_f4(src, first + one + one + one, w))
        c4, c5 = (_input_column_f4(src, first + U(4), w),
                  _input_column_f4(src, first + U(5), w))
        for i in range(6):
            _store(dst, at + U(i) * row, stride,
                   _bt_f4(c0[i], c1[i], c2[i], c3[i], c4[i], c5[i]))


@numba.njit(inline="always")
def _copy_plane(src, plane, width, rows, columns, frame, at, frame_w):
    """The top-left rows x columns of the plane at src[plane] (``width`` wide) into the
    frame from frame[at] on, rows ``frame_w`` apart."""
    for i in range(rows):
        image_row, frame_row = plane + U(i * width), at + U(i * frame_w)
        for j in range(columns):
            frame[frame_row + U(j)] = src[image_row + U(j)]


@numba.njit(**JIT)
def input_transform_kernel(x, first, channels, ph, pw, tiles_h, tiles_w, side, out, lo, hi):
    """out[xi, c*N*tiles + n*tiles + t] = (B^T d B)[xi] of each side x side input tile d
    (zeros outside the image) of channel first + c, for units u = n * channels + c in
    lo..hi; out is (side^2, >= channels*N*tiles).

    Each plane is first copied into a zeroed frame that spans every tile, padding
    included, so that no tile's load needs a bounds check: on 14x14 and 28x28 maps half
    the tiles cross an edge, and a checked tile cost several plain ones.  Scalars and
    flat unsigned offsets throughout: with small local arrays and signed indices the
    kernel ran 4x slower.
    """
    n_img, all_channels, height, width = x.shape
    src, dst = x.reshape(-1), out.reshape(-1)
    count, step = tiles_h * tiles_w, side - 2
    stride = U(out.shape[1])                      # between transform positions
    frame_w = step * (tiles_w - 1) + side
    frame = np.zeros((step * (tiles_h - 1) + side) * frame_w, np.float32)
    rows, columns = min(height, len(frame) // frame_w - ph), min(width, frame_w - pw)
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            height * width, count)
        _copy_plane(src, plane, width, rows, columns, frame, U(ph * frame_w + pw), frame_w)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                _input_tile(frame, U(step * (ty * frame_w + tx)), frame_w, side, dst,
                            row_of_tiles + U(ty * tiles_w + tx), stride)


@numba.njit(inline="always")
def _gradient_tile(src, first, width, side, dst, at, stride):
    """A Y A^T of the top-gradient tile Y whose top left is src[first]: column by column,
    then row by row."""
    w, one, row = U(width), U(1), U(side) * stride
    if side == 4:
        c0 = _a_f2(src[first], src[first + w])
        c1 = _a_f2(src[first + one], src[first + one + w])
        for i in range(4):
            _store(dst, at + U(i) * row, stride, _a_f2(c0[i], c1[i]))
    else:
        c0, c1 = _gradient_column_f4(src, first, w), _gradient_column_f4(src, first + one, w)
        c2 = _gradient_column_f4(src, first + one + one, w)
        c3 = _gradient_column_f4(src, first + one + one + one, w)
        for i in range(6):
            _store(dst, at + U(i) * row, stride, _a_f4(c0[i], c1[i], c2[i], c3[i]))


@numba.njit(inline="always")
def _gradient_column_f4(src, at, w):
    """A of the 4 top-gradient values down from src[at], w apart."""
    return _a_f4(src[at], src[at + w], src[at + w + w], src[at + w + w + w])


@numba.njit(**JIT)
def gradient_transform_kernel(dy, first, channels, tiles_h, tiles_w, side, out, lo, hi):
    """out[xi, o*N*tiles + n*tiles + t] = (A Y A^T)[xi] of each top-gradient tile Y
    (zeros past the output's edge) of channel first + o, for units u = n * channels + o
    in lo..hi.  Each plane is copied into a zeroed frame that all its tiles cover, as
    in ``input_transform_kernel``."""
    n_img, all_channels, out_h, out_w = dy.shape
    src, dst = dy.reshape(-1), out.reshape(-1)
    count, step = tiles_h * tiles_w, side - 2
    stride = U(out.shape[1])
    frame_w = step * tiles_w
    frame = np.zeros(step * tiles_h * frame_w, np.float32)
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            out_h * out_w, count)
        _copy_plane(src, plane, out_w, out_h, out_w, frame, U(0), frame_w)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                _gradient_tile(frame, U(step * (ty * frame_w + tx)), frame_w, side, dst,
                               row_of_tiles + U(ty * tiles_w + tx), stride)


@numba.njit(inline="always")
def _output_column_f2(src, at, row):
    """A^T of the 4 products down from src[at], ``row`` apart (a column of M)."""
    return _at_f2(src[at], src[at + row], src[at + row + row], src[at + row + row + row])


@numba.njit(inline="always")
def _output_column_f4(src, at, row):
    """A^T of the 6 products down from src[at], ``row`` apart (a column of M)."""
    three = row + row + row
    return _at_f4(src[at], src[at + row], src[at + row + row], src[at + three],
                  src[at + three + row], src[at + three + row + row])


@numba.njit(inline="always")
def _store_output_row(dst, plane, oy, ox, out_h, out_w, values):
    """The parts inside the output of one row of an output tile."""
    if oy >= out_h:
        return
    target = plane + U(oy * out_w + ox)
    for k in range(len(values)):
        if ox + k < out_w:
            dst[target + U(k)] = values[k]


@numba.njit(inline="always")
def _output_tile(src, at, stride, side, dst, plane, oy, ox, out_h, out_w):
    """A^T M A of one tile's products M (positions ``stride`` apart from src[at]): column
    by column, then the output tile row by row."""
    row = U(side) * stride
    if side == 4:
        r0, r1 = _output_column_f2(src, at, row), _output_column_f2(src, at + stride, row)
        r2 = _output_column_f2(src, at + stride + stride, row)
        r3 = _output_column_f2(src, at + stride + stride + stride, row)
        for i in range(2):
            _store_output_row(dst, plane, oy + i, ox, out_h, out_w,
                              _at_f2(r0[i], r1[i], r2[i], r3[i]))
    else:
        r0, r1 = _output_column_f4(src, at, row), _output_column_f4(src, at + stride, row)
        r2 = _output_column_f4(src, at + stride + stride, row)
        r3 = _output_column_f4(src, at + U(3) * stride, row)
        r4 = _output_column_f4(src, at + U(4) * stride, row)
        r5 = _output_column_f4(src, at + U(5) * stride, row)
        for i in range(4):
            _store_output_row(dst, plane, oy + i, ox, out_h, out_w,
                              _at_f4(r0[i], r1[i], r2[i], r3[i], r4[i], r5[i]))


@numba.njit(**JIT)
def output_transform_kernel(products, tiles_h, tiles_w, side, y, first, channels, lo, hi):
    """y[n, first + o] = A^T M A of each tile, M[xi] = products[xi, o*N*tiles + n*tiles + t],
    the parts inside the output, for units u = n * channels + o in lo..hi."""
    n_img, all_channels, out_h, out_w = y.shape
    src, dst = products.reshape(-1), y.reshape(-1)
    count, step = tiles_h * tiles_w, side - 2
    stride = U(products.shape[1])
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            out_h * out_w, count)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                _output_tile(src, row_of_tiles + U(ty * tiles_w + tx), stride, side, dst,
                             plane, step * ty, step * tx, out_h, out_w)


@numba.njit(inline="always")
def _add_row(weight_diff, o, c, i, values):
    """weight_diff[o, c, i, :] += values."""
    for k in range(3):
        weight_diff[o, c, i, k] += values[k]


@numba.njit(**JIT)
def filter_grad_kernel(sums, side, weight_diff, lo, hi):
    """weight_diff[o, c] += G^T dU G for units u = o * C + c in lo..hi;
    dU[xi] = sums[xi, u]."""
    inputs = weight_diff.shape[1]
    stride = U(sums.shape[1])
    row = U(side) * stride
    src = sums.reshape(-1)
    for unit in range(lo, hi):
        o, c = unit // inputs, unit % inputs
        at = U(unit)
        if side == 4:                                  # G^T dU column by column, then rows
            r0 = _gt_f2(src[at], src[at + row], src[at + U(2) * row], src[at + U(3) * row])
            at += stride
            r1 = _gt_f2(src[at], src[at + row], src[at + U(2) * row], src[at + U(3) * row])
            at += stride
            r2 = _gt_f2(src[at], src[at + row], src[at + U(2) * row], src[at + U(3) * row])
            at += stride
            r3 = _gt_f2(src[at], src[at + row], src[at + U(2) * row], src[at + U(3) * row])
            for i in range(3):
                _add_row(weight_diff, o, c, i, _gt_f2(r0[i], r1[i], r2[i], r3[i]))
        else:
            r0 = _back_column_f4(src, at, row)
            r1 = _back_column_f4(src, at + stride, row)
            r2 = _back_column_f4(src, at + U(2) * stride, row)
            r3 = _back_column_f4(src, at + U(3) * stride, row)
            r4 = _back_column_f4(src, at + U(4) * stride, row)
            r5 = _back_column_f4(src, at + U(5) * stride, row)
            for i in range(3):
                _add_row(weight_diff, o, c, i, _gt_f4(r0[i], r1[i], r2[i], r3[i], r4[i], r5[i]))


@numba.njit(inline="always")
def _back_column_f4(src, at, row):
    """G^T of the 6 summed gradients down from src[at], ``row`` apart (a column of dU)."""
    return _gt_f4(src[at], src[at + row], src[at + U(2) * row], src[at + U(3) * row],
                  src[at + U(4) * row], src[at + U(5) * row])
