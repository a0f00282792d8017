"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).

im2col + GEMM spends 9 multiply-adds per input channel on each output; F(2x2,
3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) computes a 2x2 block of outputs from a 4x4 block of inputs with 16:
the input tile d and the filter g are taken to a 4x4 "transform domain",

    V = B^T d B,  U = G g G^T,  y = A^T (U . V) A,

where the element-wise product, summed over input channels, is 16 GEMMs
(O x C) @ (C x tiles), one per transform position xi.  2.25x fewer
multiply-adds for the price of the transforms (additions only, a pass over the
input and one over the output).  In float32 the result differs from the direct
sum by rounding only (the transforms' coefficients are 0, +-1 and +-1/2).

The gradients are the same three steps:

* the input gradient of a 3x3 stride-1 convolution with padding p is itself
  a 3x3 stride-1 convolution of the top gradient with padding 2 - p and the
  filters turned by 180 degrees, input and output channels swapped;
* the filter gradient is, in the transform domain, dU[xi] = sum over tiles of
  (A dY A^T)[xi] (O x tiles) @ V[xi]^T (tiles x C), and dg = G^T dU G.

Tiles at the bottom and right edge of an odd-sized output reach past the
image: inputs there read as zeros and outputs there are dropped (their
gradients are zeros).  The images go in cache-sized chunks over the host
threads' lanes as in ``convolution``; filter-gradient sums are kept per run of
chunks and added in run order, so they do not depend on the thread count.
"""
import numba
import numpy as np

from .. import accounting, scheduler
from ..jit import JIT, U
from ..workspace import workspace

# Transform positions: a 4x4 tile.
POSITIONS = 16
# Floats between the rows of transform positions beyond their data: one cache line.
POSITION_PADDING = 16
# Floats of a chunk's transformed inputs and products on the host: within one core's L2 cache.
CACHE_CHUNK_FLOATS = 1 << 18
# ... but at least this many tiles a chunk, below which the 16 GEMMs run far under BLAS's peak.
MIN_CHUNK_TILES = 128
# Scratch slots: a layer convolves by Winograd or by im2col, never both at once, so Winograd
# takes im2col's slots (``convolution``): transformed inputs in its columns, products in its
# rows, top-gradient tiles in its padding, per-run filter sums in its per-run weight-gradient
# sums, and the transformed filters (never alive with filter sums) in run 0's.  Shared,
# they held 64 MB less at ResNet-50 batch 32.
FILTERS_SLOT = ("weight_diff", 0)
# Tiles per chunk while accounting: the MPE's 16 MB buffer of transformed inputs.
PLAN_CHUNK_FLOATS = 4 << 20


def applies(window, in_channels, out_channels, out_hw):
    """Whether a convolution goes by F(2x2, 3x3): 3x3, stride 1, no dilation, padding at
    most 2 (its input gradient pads by 2 - p), enough channels a group for the 16 GEMMs
    to pay for the transforms, and an output (``out_hw``) of at least ``MIN_OUTPUT_SIDE``
    rows and columns.  Measured, CPU ms forward / backward: 32 channels on 16x16 maps lose,
    8.0 / 18.4 by im2col against 9.5 / 22.1; 64 on 28x28 win, 12.1 / 25.7 against 9.4 /
    22.6 (Zen 4); on a Xeon (AVX-512) 384 on 13x13 maps win, 19.1 / 39.0 against 16.2 /
    35.9, and 512 on 7x7 lose, 7.4 / 15.3 against 9.6 / 27.5."""
    return (window.kernel == (3, 3) and window.stride == (1, 1)
            and window.dilation == (1, 1) and max(window.pad) <= 2
            and min(in_channels, out_channels) // window.group >= MIN_CHANNELS
            and min(out_hw) >= MIN_OUTPUT_SIDE)


# Fewer input or output channels a group than this make the transform-domain GEMMs too thin.
MIN_CHANNELS = 64
# Outputs with fewer rows or columns than this waste too much of their 2x2 tiles (7x7 maps
# compute 8x8, 31 % more) and give too few tiles an image for the 16 GEMMs.
MIN_OUTPUT_SIDE = 8


def tiles_hw(out_h, out_w):
    """2x2 output tiles covering an out_h x out_w output."""
    return (out_h + 1) // 2, (out_w + 1) // 2


def convolve(x, weight, pad, y, group=1, flip=False):
    """y (N, O, out_h, out_w) = the 3x3 stride-1 convolution of x (N, C, H, W) in
    ``group`` channel groups, padding ``pad``; weight is (O, C/G, 3, 3), or with
    ``flip`` (C, O/G, 3, 3) used turned by 180 degrees with its two channel axes
    swapped (the input gradient's filters)."""
    tiles = tiles_hw(y.shape[2], y.shape[3])
    inputs, outputs = x.shape[1] // group, y.shape[1] // group
    chunks = _chunks(x.shape[0], max(inputs, outputs), tiles)
    block = weight.shape[0] // group
    for g in range(group):
        filters = _positions(FILTERS_SLOT, outputs * inputs)
        _transform_filters(weight[g * block:(g + 1) * block], flip, filters, inputs)
        transformed = _matrices(filters, outputs)

        def chunk(lane, run, lo, hi, g=g, transformed=transformed):
            tiles_in = _matrices(_input_tiles(x, (g * inputs, inputs), lo, hi, pad, tiles,
                                              lane), inputs)
            products = _positions(("rows", lane),
                                  outputs * tiles_in.shape[2])
            for xi, matrix in enumerate(_matrices(products, outputs)):
                scheduler.gemm(transformed[xi], tiles_in[xi], 1.0, 0.0, matrix)
            _output_tiles(products, y[lo:hi], (g * outputs, outputs))
        scheduler.lanes(chunks, chunk)


def accumulate_weight_grad(x, dy, pad, weight_diff, group=1):
    """weight_diff (O, C/G, 3, 3) += the filter gradient of the convolution of x by pad."""
    tiles = tiles_hw(dy.shape[2], dy.shape[3])
    inputs, outputs = x.shape[1] // group, dy.shape[1] // group
    chunks = _chunks(x.shape[0], max(inputs, outputs), tiles)
    for g in range(group):
        sums = {}

        def chunk(lane, run, lo, hi, g=g, sums=sums):
            tiles_in = _matrices(_input_tiles(x, (g * inputs, inputs), lo, hi, pad, tiles,
                                              lane), inputs)
            gradients = _matrices(_gradient_tiles(dy, (g * outputs, outputs), lo, hi, tiles,
                                                  lane), outputs)
            if run not in sums:
                sums[run] = _positions(("weight_diff", run), outputs * inputs)
                sums[run][...] = 0.0
            for xi, matrix in enumerate(_matrices(sums[run], outputs)):
                scheduler.gemm(gradients[xi], tiles_in[xi].T, 1.0, 1.0, matrix)
        scheduler.lanes(chunks, chunk, scheduler.weight_sum_runs(POSITIONS * outputs * inputs))
        total = sums.pop(min(sums))
        for run in sorted(sums):
            total += sums[run]
        _accumulate_filter_grad(total, weight_diff[g * outputs:(g + 1) * outputs])


def _positions(slot, floats):
    """A (16, floats + POSITION_PADDING) scratch array: one row per transform position.

    A tile's 16 values go to 16 rows; were the rows a multiple of 4 KiB apart
    (ResNet-50's 56x56 stage: 196 KiB), all 16 would fall in one set of the L1
    cache and evict each other: the padding keeps them in different sets (the
    input transform ran 3x slower without it)."""
    return workspace(slot, (POSITIONS, floats + POSITION_PADDING))


def _matrices(positions, rows):
    """The 16 (rows, columns) matrices in the rows of a ``_positions`` array (views)."""
    floats = positions.shape[1] - POSITION_PADDING
    return positions[:, :floats].reshape(POSITIONS, rows, floats // rows)


def _chunks(n_images, channels, tiles):
    """(lo, hi) image ranges whose transformed tiles fit a core's cache (the core group's
    buffer while accounting), spread over the host threads."""
    per_image = max(POSITIONS * channels * tiles[0] * tiles[1], 1)
    if accounting.active():
        step = max(1, PLAN_CHUNK_FLOATS // per_image)
    else:
        fitting = max(CACHE_CHUNK_FLOATS // per_image,
                      -(-MIN_CHUNK_TILES // max(tiles[0] * tiles[1], 1)))
        step = max(1, min(fitting, -(-n_images // scheduler.gemm_threads())))
        return scheduler.balanced_chunks(n_images, step)
    return [(lo, min(lo + step, n_images)) for lo in range(0, n_images, step)]


# ---- the transforms, as kernels over independent units -------------------------------

def _transform_filters(weight, flip, out, inputs):
    """out (``_positions``, O x C) = G g G^T of each filter; a unit is one filter."""
    outputs = (out.shape[1] - POSITION_PADDING) // inputs

    def run(lo, hi):
        filter_transform_kernel(weight, flip, inputs, out, lo, hi)
    scheduler.units("winograd_filters", outputs * inputs, 9 * weight.itemsize,
                    POSITIONS * out.itemsize, 28, run)


def _input_tiles(x, channels, lo, hi, pad, tiles, lane):
    """The transformed input tiles of images x[lo:hi], channels ``(first, count)``
    (``_positions``, count x nb*tiles each); a unit is one (image, channel) plane."""
    images = x[lo:hi]
    count = tiles[0] * tiles[1]
    out = _positions(("columns", lane), channels[1] * images.shape[0] * count)

    def run(a, b):
        input_transform_kernel(images, *channels, pad[0], pad[1], tiles[0], tiles[1], out, a, b)
    scheduler.units("winograd_inputs", images.shape[0] * channels[1],
                    x[0, 0].nbytes, POSITIONS * count * out.itemsize, 32 * count, run)
    return out


def _gradient_tiles(dy, channels, lo, hi, tiles, lane):
    """The transformed top-gradient tiles (A dY A^T) of images lo..hi, channels
    ``(first, count)`` (``_positions``, count x nb*tiles each)."""
    images = dy[lo:hi]
    count = tiles[0] * tiles[1]
    out = _positions(("padded", lane), channels[1] * images.shape[0] * count)

    def run(a, b):
        gradient_transform_kernel(images, *channels, tiles[0], tiles[1], out, a, b)
    scheduler.units("winograd_gradients", images.shape[0] * channels[1],
                    dy[0, 0].nbytes, POSITIONS * count * out.itemsize, 12 * count, run)
    return out


def _output_tiles(products, y, channels):
    """Channels ``(first, count)`` of y (nb, O, out_h, out_w) = A^T M A of each tile of
    products (``_positions``)."""
    tiles = tiles_hw(y.shape[2], y.shape[3])
    count = tiles[0] * tiles[1]

    def run(a, b):
        output_transform_kernel(products, tiles[0], tiles[1], y, *channels, a, b)
    scheduler.units("winograd_outputs", y.shape[0] * channels[1],
                    POSITIONS * count * products.itemsize, y[0, 0].nbytes, 24 * count, run)


def _accumulate_filter_grad(sums, weight_diff):
    """weight_diff[o, c] += G^T dU G of the summed transform-domain gradients
    (``_positions``, O x C)."""
    def run(lo, hi):
        filter_grad_kernel(sums, weight_diff, lo, hi)
    scheduler.units("winograd_filter_grads", weight_diff.shape[0] * weight_diff.shape[1],
                    POSITIONS * sums.itemsize, 9 * weight_diff.itemsize, 24, run)


@numba.njit(inline="always")
def _g_times(a0, a1, a2):
    """G (a0, a1, a2): F(2x2, 3x3)'s filter transform of a 3-vector."""
    half = np.float32(0.5)
    return a0, half * (a0 + a1 + a2), half * (a0 - a1 + a2), a2


@numba.njit(**JIT)
def filter_transform_kernel(weight, flip, inputs, out, lo, hi):
    """out[xi, o * C + c] = (G g G^T)[xi] for units u = o * C + c in lo..hi, C = inputs;
    g = weight[o, c], or with flip weight[c, o] turned by 180 degrees."""
    stride = U(out.shape[1])
    four = stride + stride + stride + stride
    dst = out.reshape(-1)
    for unit in range(lo, hi):
        o, c = unit // inputs, unit % inputs
        g = weight[c, o, ::-1, ::-1] if flip else weight[o, c]
        c0 = _g_times(g[0, 0], g[1, 0], g[2, 0])     # G g, column by column
        c1 = _g_times(g[0, 1], g[1, 1], g[2, 1])
        c2 = _g_times(g[0, 2], g[1, 2], g[2, 2])
        at = U(unit)
        for i in range(4):                           # (G g) G^T, row by row
            _store_four(dst, at, stride, _g_times(c0[i], c1[i], c2[i]))
            at += four


@numba.njit(inline="always")
def _unit_offsets(unit, first, channels, all_channels, n_img, plane_size, count):
    """Where unit u = n * channels + c starts: its plane (channel first + c of image n) in
    the (N, all_channels, ...) array, and its first tile in a row of ``_positions``."""
    n, c = unit // channels, unit % channels
    return (U((n * all_channels + first + c) * plane_size),
            U(c * n_img * count + n * count))


@numba.njit(inline="always")
def _tap(src, plane, y, x, height, width):
    """src's value at (y, x) of a plane, zero outside the image."""
    if y < 0 or y >= height or x < 0 or x >= width:
        return np.float32(0.0)
    return src[plane + U(y * width + x)]


@numba.njit(inline="always")
def _b_transposed(a0, a1, a2, a3):
    """B^T (a0, a1, a2, a3): F(2x2, 3x3)'s input transform of a 4-vector."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@numba.njit(inline="always")
def _store_four(dst, at, stride, values):
    """dst[at + k*stride] = values[k]: four transform positions of one tile."""
    dst[at] = values[0]
    at += stride
    dst[at] = values[1]
    at += stride
    dst[at] = values[2]
    at += stride
    dst[at] = values[3]


@numba.njit(inline="always")
def _column(src, first, w, j):
    """B^T of column j of the 4x4 tile whose rows start at first, first + w, ..."""
    at = first + j
    return _b_transposed(src[at], src[at + w], src[at + w + w], src[at + w + w + w])


@numba.njit(inline="always")
def _transform_input_tile(src, first, width, dst, at, stride):
    """B^T d B of the 4x4 tile of src whose top left is src[first] (all inside the image).

    Every offset is unsigned (a signed one, e.g. ``first + 1``, costs a
    wraparound check per load).
    """
    w, one = U(width), U(1)
    c0 = _column(src, first, w, U(0))
    c1 = _column(src, first, w, one)
    c2 = _column(src, first, w, one + one)
    c3 = _column(src, first, w, one + one + one)
    four = stride + stride + stride + stride
    _store_four(dst, at, stride, _b_transposed(c0[0], c1[0], c2[0], c3[0]))
    _store_four(dst, at + four, stride, _b_transposed(c0[1], c1[1], c2[1], c3[1]))
    _store_four(dst, at + four + four, stride, _b_transposed(c0[2], c1[2], c2[2], c3[2]))
    _store_four(dst, at + four + four + four, stride,
                _b_transposed(c0[3], c1[3], c2[3], c3[3]))


@numba.njit(**JIT)
def input_transform_kernel(x, first, channels, ph, pw, tiles_h, tiles_w, out, lo, hi):
    """out[xi, c*N*tiles + n*tiles + t] = (B^T d B)[xi] of each 4x4 input tile d (zeros
    outside the image) of channel first + c, for units u = n * channels + c in lo..hi;
    out is (16, >= channels*N*tiles).

    Scalars and flat unsigned offsets throughout: with small local arrays and
    signed indices the kernel ran 4x slower.
    """
    n_img, all_channels, height, width = x.shape
    src, dst = x.reshape(-1), out.reshape(-1)
    count = tiles_h * tiles_w
    stride = U(out.shape[1])                      # between transform positions
    edge = np.empty(16, np.float32)
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            height * width, count)
        for ty in range(tiles_h):
            y0 = 2 * ty - ph
            for tx in range(tiles_w):
                x0 = 2 * tx - pw
                at = row_of_tiles + U(ty * tiles_w + tx)
                if y0 >= 0 and x0 >= 0 and y0 + 4 <= height and x0 + 4 <= width:
                    _transform_input_tile(src, plane + U(y0 * width + x0), width, dst, at,
                                          stride)
                    continue
                for i in range(4):
                    for j in range(4):
                        edge[4 * i + j] = _tap(src, plane, y0 + i, x0 + j, height, width)
                _transform_input_tile(edge, U(0), 4, dst, at, stride)


@numba.njit(inline="always")
def _a_times(p, q):
    """A (p, q): F(2x2, 3x3)'s output transform, transposed, of a 2-vector."""
    return p, p + q, p - q, -q


@numba.njit(**JIT)
def gradient_transform_kernel(dy, first, channels, tiles_h, tiles_w, out, lo, hi):
    """out[xi, o*N*tiles + n*tiles + t] = (A Y A^T)[xi] of each 2x2 top-gradient tile Y
    (zeros past the output's edge) of channel first + o, for units u = n * channels + o
    in lo..hi."""
    n_img, all_channels, out_h, out_w = dy.shape
    src, dst = dy.reshape(-1), out.reshape(-1)
    count = tiles_h * tiles_w
    stride = U(out.shape[1])
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            out_h * out_w, count)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                y0, x0 = 2 * ty, 2 * tx
                a = _tap(src, plane, y0, x0, out_h, out_w)
                b = _tap(src, plane, y0, x0 + 1, out_h, out_w)
                c = _tap(src, plane, y0 + 1, x0, out_h, out_w)
                e = _tap(src, plane, y0 + 1, x0 + 1, out_h, out_w)
                # A Y: rows (a, b), (a + c, b + e), (a - c, b - e), (-c, -e); then (.) A^T.
                at = row_of_tiles + U(ty * tiles_w + tx)
                four = stride + stride + stride + stride
                _store_four(dst, at, stride, _a_times(a, b))
                _store_four(dst, at + four, stride, _a_times(a + c, b + e))
                _store_four(dst, at + four + four, stride, _a_times(a - c, b - e))
                _store_four(dst, at + four + four + four, stride, _a_times(-c, -e))


@numba.njit(inline="always")
def _a_transposed(m0, m1, m2, m3):
    """A^T (m0, m1, m2, m3): F(2x2, 3x3)'s output transform of a 4-vector."""
    return m0 + m1 + m2, m1 - m2 - m3


@numba.njit(inline="always")
def _output_column(src, at, four):
    """Column j of A^T M, M's column j read from src[at + k*four], k = 0..3."""
    return _a_transposed(src[at], src[at + four], src[at + four + four],
                         src[at + four + four + four])


@numba.njit(inline="always")
def _store_output_row(dst, plane, oy, ox, out_h, out_w, m0, m1, m2, m3):
    """The parts inside the output of one row of a 2x2 output tile, from a row of A^T M."""
    if oy >= out_h:
        return
    left, right = _a_transposed(m0, m1, m2, m3)
    target = plane + U(oy * out_w + ox)
    dst[target] = left
    if ox + 1 < out_w:
        dst[target + U(1)] = right


@numba.njit(**JIT)
def output_transform_kernel(products, tiles_h, tiles_w, y, first, channels, lo, hi):
    """y[n, first + o] = A^T M A of each tile, M[xi] = products[xi, o*N*tiles + n*tiles + t],
    the parts inside the output, for units u = n * channels + o in lo..hi."""
    n_img, all_channels, out_h, out_w = y.shape
    src, dst = products.reshape(-1), y.reshape(-1)
    count = tiles_h * tiles_w
    stride = U(products.shape[1])
    for unit in range(lo, hi):
        plane, row_of_tiles = _unit_offsets(unit, first, channels, all_channels, n_img,
                                            out_h * out_w, count)
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                at = row_of_tiles + U(ty * tiles_w + tx)
                four = stride + stride + stride + stride
                r0 = _output_column(src, at, four)
                r1 = _output_column(src, at + stride, four)
                r2 = _output_column(src, at + stride + stride, four)
                r3 = _output_column(src, at + stride + stride + stride, four)
                # (A^T M) A: combine columns, row by row of the 2x2 output tile.
                _store_output_row(dst, plane, 2 * ty, 2 * tx, out_h, out_w,
                                  r0[0], r1[0], r2[0], r3[0])
                _store_output_row(dst, plane, 2 * ty + 1, 2 * tx, out_h, out_w,
                                  r0[1], r1[1], r2[1], r3[1])


@numba.njit(inline="always")
def _g_transposed(u0, u1, u2, u3):
    """G^T (u0, u1, u2, u3): back from the transform domain to a filter's 3-vector."""
    half = np.float32(0.5)
    return u0 + half * (u1 + u2), half * (u1 - u2), half * (u1 + u2) + u3


@numba.njit(inline="always")
def _back_column(src, at, four):
    """G^T of column j of dU, read from src[at + k*four], k = 0..3."""
    return _g_transposed(src[at], src[at + four], src[at + four + four],
                         src[at + four + four + four])


@numba.njit(**JIT)
def filter_grad_kernel(sums, weight_diff, lo, hi):
    """weight_diff[o, c] += G^T dU G for units u = o * C + c in lo..hi;
    dU[xi] = sums[xi, u]."""
    inputs = weight_diff.shape[1]
    stride = U(sums.shape[1])
    four = stride + stride + stride + stride
    src = sums.reshape(-1)
    for unit in range(lo, hi):
        o, c = unit // inputs, unit % inputs
        at = U(unit)
        r0 = _back_column(src, at, four)           # G^T dU, column by column
        r1 = _back_column(src, at + stride, four)
        r2 = _back_column(src, at + stride + stride, four)
        r3 = _back_column(src, at + stride + stride + stride, four)
        for i in range(3):                                       # (G^T dU) G, row by row
            row = _g_transposed(r0[i], r1[i], r2[i], r3[i])
            weight_diff[o, c, i, 0] += row[0]
            weight_diff[o, c, i, 1] += row[1]
            weight_diff[o, c, i, 2] += row[2]
