"""The host's own GEMM for convolution-shaped products: an 8 x 32 register block.

OpenBLAS runs the GEMMs of small-channel convolutions (CIFAR10-quick's 32
output channels: 32 x 800 x 512 a chunk) well under the CPU's peak, and packs
the whole column matrix before it multiplies.  This kernel keeps an 8-row by
32-column block of C in 16 vector registers (``simd``), so each step of K
costs two loads of B, eight broadcasts of A and sixteen fused multiply-adds,
and it reads B where it lies (rows contiguous, any row stride): only A, the
small side (the filters), is packed, into panels of 8 rows stored K-major.
One Zen 4 core, GFLOP/s: CIFAR10-quick's conv2 forward, 32 x 800 x 512, 108
against OpenBLAS's 96 (``bench/bench_register_gemm.py``, docs/speed-kernels.md).

It takes only what it was measured on: float32, M a multiple of 8, N of 32,
K at most ``MAX_K`` (an A panel and a B sliver stay in the core's L2), B and C
with contiguous rows, C overwritten.  Everything else goes to BLAS.  Each element of C
is one running sum over K in order, so a row share computes the same bits as
the whole product: the result does not depend on the host thread count.
"""
import numba
import numpy as np

from . import simd
from .jit import JIT, U

ROWS = 8
COLUMNS = 2 * simd.LANES
MAX_K = 1024


def applies(left, right, out):
    """Whether ``out = left @ right`` goes by this kernel (see the module doc)."""
    (m, k), n = left.shape, right.shape[1]
    return (m % ROWS == 0 and n % COLUMNS == 0 and 0 < k <= MAX_K
            and left.dtype == right.dtype == out.dtype == np.float32
            and right.strides[1] == out.strides[1] == 4
            and right.strides[0] % 4 == out.strides[0] % 4 == 0
            and right.strides[0] >= 0 and out.strides[0] >= 0)


def multiply(left, right, out):
    """out = left @ right, for operands that ``applies`` accepts."""
    m, k = left.shape
    panels = np.empty(m * k, np.float32)
    pack_panels_kernel(left, panels)
    multiply_kernel(panels, _flat(right), right.strides[0] // 4, _flat(out),
                    out.strides[0] // 4, m, right.shape[1], k)
    return out


def _flat(matrix):
    """The 1-D float32 array that starts at matrix[0, 0] and ends at its last element."""
    rows, cols = matrix.shape
    length = (rows - 1) * (matrix.strides[0] // 4) + cols
    return np.lib.stride_tricks.as_strided(matrix, (length,), (4,))


@numba.njit(**JIT)
def pack_panels_kernel(a, panels):
    """panels[(i // 8) * 8K + k * 8 + i % 8] = a[i, k]: A's rows in blocks of 8, K-major."""
    m, k = a.shape
    for block in range(m // ROWS):
        base = block * ROWS * k
        for kk in range(k):
            for r in range(ROWS):
                panels[base + kk * ROWS + r] = a[block * ROWS + r, kk]


@numba.njit(**JIT)
def multiply_kernel(panels, b, ldb, c, ldc, m, n, k):
    """c = A @ b over 8 x 32 blocks of c, column blocks outermost (each B sliver of K x 32
    is read from cache by every row block)."""
    for j in range(0, n, COLUMNS):
        for i in range(0, m, ROWS):
            a = U(i * k)
            out = U(i * ldc + j)
            step = U(ldc)
            c00 = simd.zeros(); c01 = simd.zeros(); c10 = simd.zeros(); c11 = simd.zeros()
            c20 = simd.zeros(); c21 = simd.zeros(); c30 = simd.zeros(); c31 = simd.zeros()
            c40 = simd.zeros(); c41 = simd.zeros(); c50 = simd.zeros(); c51 = simd.zeros()
            c60 = simd.zeros(); c61 = simd.zeros(); c70 = simd.zeros(); c71 = simd.zeros()
            for kk in range(k):
                row = U(kk * ldb + j)
                b0 = simd.load(b, row)
                b1 = simd.load(b, row + U(16))
                at = a + U(kk * ROWS)
                s = simd.splat(panels[at])
                c00 = simd.fma(s, b0, c00); c01 = simd.fma(s, b1, c01)
                s = simd.splat(panels[at + U(1)])
                c10 = simd.fma(s, b0, c10); c11 = simd.fma(s, b1, c11)
                s = simd.splat(panels[at + U(2)])
                c20 = simd.fma(s, b0, c20); c21 = simd.fma(s, b1, c21)
                s = simd.splat(panels[at + U(3)])
                c30 = simd.fma(s, b0, c30); c31 = simd.fma(s, b1, c31)
                s = simd.splat(panels[at + U(4)])
                c40 = simd.fma(s, b0, c40); c41 = simd.fma(s, b1, c41)
                s = simd.splat(panels[at + U(5)])
                c50 = simd.fma(s, b0, c50); c51 = simd.fma(s, b1, c51)
                s = simd.splat(panels[at + U(6)])
                c60 = simd.fma(s, b0, c60); c61 = simd.fma(s, b1, c61)
                s = simd.splat(panels[at + U(7)])
                c70 = simd.fma(s, b0, c70); c71 = simd.fma(s, b1, c71)
            simd.store(c, out, c00); simd.store(c, out + U(16), c01); out += step
            simd.store(c, out, c10); simd.store(c, out + U(16), c11); out += step
            simd.store(c, out, c20); simd.store(c, out + U(16), c21); out += step
            simd.store(c, out, c30); simd.store(c, out + U(16), c31); out += step
            simd.store(c, out, c40); simd.store(c, out + U(16), c41); out += step
            simd.store(c, out, c50); simd.store(c, out + U(16), c51); out += step
            simd.store(c, out, c60); simd.store(c, out + U(16), c61); out += step
            simd.store(c, out, c70); simd.store(c, out + U(16), c71)
