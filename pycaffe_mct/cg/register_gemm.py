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
            block = zeros_block()
            for kk in range(k):
                row = U(kk * ldb + j)
                block = update_block(panels, a + U(kk * ROWS), simd.load(b, row),
                                     simd.load(b, row + U(16)), block)
            store_block(c, U(i * ldc + j), U(ldc), block)


@numba.njit(inline="always")
def zeros_block():
    """An 8 x 32 block of zeros: 16 vectors, row r's two at 2r and 2r + 1."""
    z = simd.zeros()
    return (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)


@numba.njit(inline="always")
def update_block(panels, at, b0, b1, block):
    """block + panels[at:at + 8] (x) (b0, b1): one step of K for an 8 x 32 block."""
    s0 = simd.splat(panels[at])
    s1 = simd.splat(panels[at + U(1)])
    s2 = simd.splat(panels[at + U(2)])
    s3 = simd.splat(panels[at + U(3)])
    s4 = simd.splat(panels[at + U(4)])
    s5 = simd.splat(panels[at + U(5)])
    s6 = simd.splat(panels[at + U(6)])
    s7 = simd.splat(panels[at + U(7)])
    return (simd.fma(s0, b0, block[0]), simd.fma(s0, b1, block[1]),
            simd.fma(s1, b0, block[2]), simd.fma(s1, b1, block[3]),
            simd.fma(s2, b0, block[4]), simd.fma(s2, b1, block[5]),
            simd.fma(s3, b0, block[6]), simd.fma(s3, b1, block[7]),
            simd.fma(s4, b0, block[8]), simd.fma(s4, b1, block[9]),
            simd.fma(s5, b0, block[10]), simd.fma(s5, b1, block[11]),
            simd.fma(s6, b0, block[12]), simd.fma(s6, b1, block[13]),
            simd.fma(s7, b0, block[14]), simd.fma(s7, b1, block[15]))


@numba.njit(inline="always")
def store_block(c, at, step, block):
    """c[at + r * step:... + 32] = row r of the block, for r in 0..7."""
    for r in range(ROWS):
        simd.store(c, at + U(r) * step, block[2 * r])
        simd.store(c, at + U(r) * step + U(16), block[2 * r + 1])
