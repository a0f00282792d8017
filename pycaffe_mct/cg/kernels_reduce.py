"""numba kernels of row reductions, MVN's normalisation, Tile's gradient sum and Embed.

Arrays arrive flat (1-D) with their row lengths as integers, and every index is
computed in ``uint64``: numba adds negative-index wraparound code to signed
indices, which stops LLVM from vectorising the inner loops.  (In numba,
uint64 + int64 is float64, so every operand of an index is made uint64.)  Each
kernel runs the units ``[lo, hi)`` of its outer loop, the range the core-group
scheduler hands to one CPE tile (literal mode) or all units (fast mode); sums
accumulate in float64, as Caffe's float32 sums would need for long rows.
"""
import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)
u = numba.uint64

# Row reductions (the Reduction layer's operations; MEAN is SUM with a 1/length factor).
SUM, ASUM, SUMSQ = 0, 1, 2


@numba.njit(parallel=True, **_JIT)
def row_reduce(x, length, operation, factor, out, lo, hi):
    """out[r] = factor * the sum over row r of x (rows of ``length``) of x, |x| or x^2."""
    n = u(length)
    for row in numba.prange(lo, hi):
        start = u(row) * n
        total = 0.0
        if operation == ASUM:
            for i in range(n):
                total += abs(x[start + i])
        elif operation == SUMSQ:
            for i in range(n):
                value = np.float64(x[start + i])
                total += value * value
        else:
            for i in range(n):
                total += x[start + i]
        out[row] = total * factor


@numba.njit(parallel=True, **_JIT)
def row_reduce_backward(x, dy, length, operation, factor, dx, lo, hi):
    """dx over row r = factor * dy[r] times 1, sign(x) or 2x (the reduced term's derivative)."""
    n = u(length)
    for row in numba.prange(lo, hi):
        start = u(row) * n
        gradient = np.float32(factor) * dy[row]
        if operation == ASUM:
            zero = np.float32(0)
            for i in range(n):
                value = x[start + i]
                dx[start + i] = gradient if value > 0 else (-gradient if value < 0 else zero)
        elif operation == SUMSQ:
            twice = np.float32(2) * gradient
            for i in range(n):
                dx[start + i] = twice * x[start + i]
        else:
            for i in range(n):
                dx[start + i] = gradient


@numba.njit(parallel=True, **_JIT)
def normalize_rows(x, mean, divisor, length, out, lo, hi):
    """out over row r = (x - mean[r]) / divisor[r], Caffe's MVN order of operations."""
    n = u(length)
    for row in numba.prange(lo, hi):
        start = u(row) * n
        centre, scale = mean[row], divisor[row]
        for i in range(n):
            out[start + i] = (x[start + i] - centre) / scale


@numba.njit(parallel=True, **_JIT)
def tile_sum(dy, tiles, inner, dx, lo, hi):
    """dx[o, i] = sum over t of dy[o, t, i] (flat (outer, tiles, inner) and (outer, inner))."""
    count, width = u(tiles), u(inner)
    for block in numba.prange(lo, hi):
        target = u(block) * width
        source = target * count
        for i in range(width):
            dx[target + i] = dy[source + i]
        for t in range(u(1), count):
            offset = source + t * width
            for i in range(width):
                dx[target + i] += dy[offset + i]


@numba.njit(parallel=True, **_JIT)
def embed_forward(weight, indices, bias, width, out, lo, hi):
    """out row p = weight row indices[p] (+ bias when it has ``width`` entries)."""
    n = u(width)
    with_bias = bias.size == width
    for position in numba.prange(lo, hi):
        target = u(position) * n
        source = u(indices[position]) * n
        if with_bias:
            for j in range(n):
                out[target + j] = weight[source + j] + bias[j]
        else:
            for j in range(n):
                out[target + j] = weight[source + j]


@numba.njit(parallel=True, **_JIT)
def embed_weight_grad(dy, order, rows, bounds, width, dweight, lo, hi):
    """dweight row rows[q] += the dy rows order[bounds[q]:bounds[q + 1]] (in that order).

    Each unit owns one weight row, so the scatter-add needs no atomics.
    """
    n = u(width)
    for q in numba.prange(lo, hi):
        target = u(rows[q]) * n
        for p in range(bounds[q], bounds[q + 1]):
            source = u(order[p]) * n
            for j in range(n):
                dweight[target + j] += dy[source + j]
