"""Embed: looking rows of a weight matrix up by index, and its weight gradient.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def embed_forward(weight, indices, bias, out):
    """out row p = weight row indices[p] (+ bias); weight (rows, width), out (count, width)."""
    width = weight.shape[1]
    bias = np.empty(0, np.float32) if bias is None else bias
    weight_flat, out_flat = weight.reshape(-1), out.reshape(-1)
    row = width * out.itemsize
    # Unit: one looked-up row (its index, the weight row and the bias in, the row out).
    scheduler.units("embed_forward", len(indices), indices.itemsize + row + bias.nbytes, row,
                    width if bias.size else 0,
                    lambda lo, hi: embed_forward_kernel(
                        weight_flat, indices, bias, width, out_flat, lo, hi))


def embed_accumulate_weight_grad(dy, indices, dweight):
    """dweight row i += the sum of the dy rows whose index is i (dy (count, width)).

    The host sorts the indices (bookkeeping on integers); each CPE unit then owns
    one distinct weight row, so no two units add into the same row.
    """
    width = dweight.shape[1]
    order = np.argsort(indices, kind="stable")
    rows, starts = np.unique(indices[order], return_index=True)
    bounds = np.append(starts, len(indices)).astype(np.int64)
    dy_flat, dweight_flat = dy.reshape(-1), dweight.reshape(-1)
    # Per unit, the average number of dy rows a distinct index gathers.
    gathered = -(-len(indices) // max(len(rows), 1))
    row = width * dweight.itemsize
    scheduler.units("embed_weight_grad", len(rows), gathered * (row + indices.itemsize) + row,
                    row, gathered * width,
                    lambda lo, hi: embed_weight_grad_kernel(
                        dy_flat, order, rows, bounds, width, dweight_flat, lo, hi))


@numba.njit(parallel=True, **JIT)
def embed_forward_kernel(weight, indices, bias, width, out, lo, hi):
    """out row p = weight row indices[p] (+ bias when it has ``width`` entries)."""
    n = U(width)
    with_bias = bias.size == width
    for position in numba.prange(lo, hi):
        target = U(position) * n
        source = U(indices[position]) * n
        if with_bias:
            for j in range(n):
                out[target + j] = weight[source + j] + bias[j]
        else:
            for j in range(n):
                out[target + j] = weight[source + j]


@numba.njit(parallel=True, **JIT)
def embed_weight_grad_kernel(dy, order, rows, bounds, width, dweight, lo, hi):
    """dweight row rows[q] += the dy rows order[bounds[q]:bounds[q + 1]] (in that order).

    Each unit owns one weight row, so the scatter-add needs no atomics.
    """
    n = U(width)
    for q in numba.prange(lo, hi):
        target = U(rows[q]) * n
        for p in range(bounds[q], bounds[q + 1]):
            source = U(order[p]) * n
            for j in range(n):
                dweight[target + j] += dy[source + j]
