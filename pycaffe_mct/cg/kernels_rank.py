"""numba kernels of ranking: ArgMax's top-k selection.

Arrays arrive flat (1-D) and every index is built from ``uint64`` parts (see
``kernels_reduce.py`` for why).  A unit is one ranked column: the ``length``
values x[o, :, j] of an (outer, length, inner) array, u = o * inner + j; each
kernel runs the units ``[lo, hi)`` the core-group scheduler hands it.

The ranking is Caffe's: descending by value, and of equal values the higher
index first (Caffe sorts (value, index) pairs with std::greater).
"""
import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)
u = numba.uint64

# Up to this top_k a column is ranked by insertion into a sorted buffer of
# top_k entries (O(length * top_k)); beyond it by one sort (O(length log length)).
INSERTION_TOP_K = 16


@numba.njit(inline="always")
def _insert_top_k(x, start, step, length, top_k, values, indices):
    """The top_k (value, index) pairs of x[start + i * step], i < length, best first."""
    filled = 0
    for i in range(length):
        value = x[start + u(i) * step]
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
    low = u(0xFFFFFFFF)
    keys = np.empty(length, np.uint64)
    for i in range(length):
        at = start + u(i) * step
        b = u(bits[at]) if x[at] != 0 else u(0)
        monotonic = b ^ low if b >> u(31) else b | u(0x80000000)
        keys[i] = ((low - monotonic) << u(32)) | (low - u(i))
    keys.sort()
    for t in range(top_k):
        index = low - (keys[t] & low)
        indices[t] = index
        values[t] = x[start + index * step]


@numba.njit(parallel=True, **_JIT)
def top_k(x, length, inner, k, write_indices, write_values, out, lo, hi):
    """Rank columns lo..hi of x (outer, length, inner) and write their top ``k``.

    out is (outer, parts, k, inner) flat, parts = write_indices + write_values:
    part 0 the indices (as floats) if ``write_indices``, then the values if
    ``write_values``.
    """
    n, width, count = u(length), u(inner), u(k)
    parts = u(write_indices + write_values)
    for unit in numba.prange(lo, hi):
        o, j = u(unit) // width, u(unit) % width
        start = o * n * width + j
        values = np.empty(k, np.float32)
        indices = np.empty(k, np.int64)
        if k <= INSERTION_TOP_K:
            _insert_top_k(x, start, width, length, k, values, indices)
        else:
            _sort_top_k(x, start, width, length, k, values, indices)
        base = o * parts * count * width + j
        value_part = base + u(write_indices) * count * width
        for t in range(count):
            if write_indices:
                out[base + t * width] = indices[t]
            if write_values:
                out[value_part + t * width] = values[t]
