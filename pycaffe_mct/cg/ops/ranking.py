"""ArgMax's ranking: the top k of each column, by Caffe's rule.

A unit is one ranked column: the ``length`` values x[o, :, j] of an (outer,
length, inner) array, u = o * inner + j.  The ranking is Caffe's: descending by
value, and of equal values the higher index first (Caffe sorts (value, index)
pairs with std::greater).
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


# Up to this top_k a column is ranked by insertion into a sorted buffer of
# top_k entries (O(length * top_k)); beyond it by one sort (O(length log length)).
INSERTION_TOP_K = 16


def top_k(x, k, write_indices, write_values, out):
    """ArgMax's ranking: the ``k`` largest of each column x[o, :, j] of x (outer, length,
    inner), by Caffe's rule (equal values: the higher index first), into out (outer,
    parts, k, inner): the indices as floats if ``write_indices``, then the values if
    ``write_values`` (parts counts the two flags)."""
    outer, length, inner = x.shape
    x_flat, out_flat = x.reshape(-1), out.reshape(-1)
    parts = write_indices + write_values
    # Unit: one column; per value, a comparison per rank it passes (insertion) or a
    # sort's log2(length).
    insertion = k <= INSERTION_TOP_K
    scheduler.units("top_k", outer * inner, length * x.itemsize, parts * k * out.itemsize,
                    length * (k if insertion else max(1, int(np.log2(length)))),
                    lambda lo, hi: top_k_kernel(x_flat, length, inner, k, write_indices,
                                                write_values, out_flat, lo, hi))


@numba.njit(inline="always")
def _insert_top_k(x, start, step, length, top_k, values, indices):
    """The top_k (value, index) pairs of x[start + i * step], i < length, best first."""
    filled = 0
    for i in range(length):
        value = x[start + U(i) * step]
        if filled == top_k and not value >= values[top_k - 1]:
            continue
        # Index i is above every index held, so it ranks before any value <= its own.
        position = filled if filled < top_k else top_k - 1
        while position > 0 and value >= values[position - 1]:
            values[position] = values[position - 1]
            indices[position] = indices[position - 1]
            position -= 1
        values[position] = value
        indices[position] = i
        filled = min(filled + 1, top_k)


@numba.njit(inline="always")
def _sort_top_k(x, start, step, length, top_k, values, indices):
    """As ``_insert_top_k``, by one sort of integer keys that order (value, index) pairs:
    the value's float bits made monotonic (with -0 read as +0, equal in Caffe's
    comparison) and complemented in the high word, the index complemented in the low
    word, so ascending keys are Caffe's ranking."""
    bits = x.view(np.uint32)
    low = U(0xFFFFFFFF)
    keys = np.empty(length, np.uint64)
    for i in range(length):
        at = start + U(i) * step
        b = U(bits[at]) if x[at] != 0 else U(0)
        monotonic = b ^ low if b >> U(31) else b | U(0x80000000)
        keys[i] = ((low - monotonic) << U(32)) | (low - U(i))
    keys.sort()
    for t in range(top_k):
        index = low - (keys[t] & low)
        indices[t] = index
        values[t] = x[start + index * step]


@numba.njit(parallel=True, **JIT)
def top_k_kernel(x, length, inner, k, write_indices, write_values, out, lo, hi):
    """Rank columns lo..hi of x (outer, length, inner) and write their top ``k``.

    out is (outer, parts, k, inner) flat, parts = write_indices + write_values:
    part 0 the indices (as floats) if ``write_indices``, then the values if
    ``write_values``.
    """
    n, width, count = U(length), U(inner), U(k)
    parts = U(write_indices + write_values)
    for unit in numba.prange(lo, hi):
        o, j = U(unit) // width, U(unit) % width
        start = o * n * width + j
        values = np.empty(k, np.float32)
        indices = np.empty(k, np.int64)
        if k <= INSERTION_TOP_K:
            _insert_top_k(x, start, width, length, k, values, indices)
        else:
            _sort_top_k(x, start, width, length, k, values, indices)
        base = o * parts * count * width + j
        value_part = base + U(write_indices) * count * width
        for t in range(count):
            if write_indices:
                out[base + t * width] = indices[t]
            if write_values:
                out[value_part + t * width] = values[t]
