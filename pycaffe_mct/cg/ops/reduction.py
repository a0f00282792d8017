"""Row reductions (the Reduction layer: SUM, ASUM, SUMSQ, MEAN) and Tile's
gradient sum.  Rows arrive flat with their lengths as integers; sums
accumulate in float64, as Caffe's float32 sums would need for long rows.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


# Row reductions (the Reduction layer's operations; MEAN is SUM with a 1/length factor).
SUM, ASUM, SUMSQ = 0, 1, 2
_REDUCE_OPERATIONS = {"sum": SUM, "asum": ASUM,
                      "sumsq": SUMSQ, "mean": SUM}


def _row_factor(operation, length, coeff):
    """The factor of a row reduction: coeff, divided by the row length for a mean."""
    return coeff / length if operation == "mean" and length else coeff


def row_reduce(x, operation, coeff, out):
    """out[r] = coeff * the SUM, ASUM (sum of |x|), SUMSQ or MEAN of row r of x (rows, length)."""
    rows, length = x.shape
    flat = x.reshape(-1)
    # Unit: one row in, one value out; |x| and x^2 cost a flop more than the add.
    scheduler.units("reduce_" + operation, rows, length * x.itemsize, out.itemsize,
                    length * (1 if operation in ("sum", "mean") else 2),
                    lambda lo, hi: row_reduce_kernel(
                        flat, length, _REDUCE_OPERATIONS[operation],
                        _row_factor(operation, length, coeff), out, lo, hi))


def row_reduce_backward(x, dy, operation, coeff, dx):
    """dx of ``row_reduce``: coeff * dy[r] times 1, sign(x), 2x or 1/length, over row r."""
    rows, length = x.shape
    x_flat, dx_flat = x.reshape(-1), dx.reshape(-1)
    reads_x = operation in ("asum", "sumsq")
    scheduler.units("reduce_" + operation + "_backward", rows,
                    (length * reads_x + 1) * x.itemsize, length * dx.itemsize,
                    length * (1 + reads_x),
                    lambda lo, hi: row_reduce_backward_kernel(
                        x_flat, dy, length, _REDUCE_OPERATIONS[operation],
                        _row_factor(operation, length, coeff), dx_flat, lo, hi))


def tile_sum(dy, dx):
    """dx (outer, inner) = the sum of dy (outer, tiles, inner) over its middle axis
    (the gradient of repeating a block ``tiles`` times)."""
    outer, tiles, inner = dy.shape
    dy_flat, dx_flat = dy.reshape(-1), dx.reshape(-1)
    scheduler.units("tile_sum", outer, tiles * inner * dy.itemsize, inner * dx.itemsize,
                    (tiles - 1) * inner,
                    lambda lo, hi: tile_sum_kernel(dy_flat, tiles, inner, dx_flat,
                                                   lo, hi))


@numba.njit(parallel=True, **JIT)
def row_reduce_kernel(x, length, operation, factor, out, lo, hi):
    """out[r] = factor * the sum over row r of x (rows of ``length``) of x, |x| or x^2."""
    n = U(length)
    for row in numba.prange(lo, hi):
        start = U(row) * n
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


@numba.njit(parallel=True, **JIT)
def row_reduce_backward_kernel(x, dy, length, operation, factor, dx, lo, hi):
    """dx over row r = factor * dy[r] times 1, sign(x) or 2x (the reduced term's derivative)."""
    n = U(length)
    for row in numba.prange(lo, hi):
        start = U(row) * n
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


@numba.njit(parallel=True, **JIT)
def tile_sum_kernel(dy, tiles, inner, dx, lo, hi):
    """dx[o, i] = sum over t of dy[o, t, i] (flat (outer, tiles, inner) and (outer, inner))."""
    count, width = U(tiles), U(inner)
    for block in numba.prange(lo, hi):
        target = U(block) * width
        source = target * count
        for i in range(width):
            dx[target + i] = dy[source + i]
        for t in range(U(1), count):
            offset = source + t * width
            for i in range(width):
                dx[target + i] += dy[offset + i]
