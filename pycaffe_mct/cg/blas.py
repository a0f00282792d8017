"""BLAS sgemm with beta (``C = alpha*A@B + beta*C`` in place), callable from any host thread.

numpy's matmul has no beta, so ``C += A @ B`` needs a product buffer and an
add: an AlexNet fc6 weight gradient took 64 ms that way instead of 35.  SciPy's
sgemm wrapper keeps the GIL, and its BLAS build ran small GEMMs from two host
threads one after the other.  So this calls ``cblas_sgemm`` of numpy's own
BLAS (the OpenBLAS numpy's wheels ship, found next to numpy) through ctypes,
which releases the GIL for the call.  Where that library is not there (numpy
built against another BLAS), ``sgemm`` falls back to numpy: a product and an add.
"""
import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (library file patterns next to numpy, symbol, integer type): numpy >= 2's wheels, then 1.x's.
_CANDIDATES = [(("numpy.libs/libscipy_openblas64_*", "numpy/.dylibs/libscipy_openblas64_*"),
                "scipy_cblas_sgemm64_", ctypes.c_int64),
               (("numpy.libs/libopenblas64_*", "numpy/.dylibs/libopenblas64_*"),
                "cblas_sgemm64_", ctypes.c_int64)]


def _numpy_cblas_sgemm():
    """numpy's cblas_sgemm as a ctypes function, or None."""
    site = os.path.dirname(os.path.dirname(np.__file__))
    for patterns, symbol, integer in _CANDIDATES:
        for pattern in patterns:
            for path in glob.glob(os.path.join(site, pattern)):
                function = getattr(ctypes.CDLL(path), symbol, None)
                if function is not None:
                    function.restype = None
                    function.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [
                        ctypes.c_float, ctypes.c_void_p, integer, ctypes.c_void_p, integer,
                        ctypes.c_float, ctypes.c_void_p, integer]
                    return function
    return None


_cblas_sgemm = _numpy_cblas_sgemm()


def available():
    """Whether sgemm runs in one BLAS call (else it falls back to numpy)."""
    return _cblas_sgemm is not None


def _operand(matrix):
    """(transpose flag, leading dimension, array) of a row-major BLAS operand for ``matrix``."""
    rows, cols = matrix.shape
    row_stride, col_stride = (s // matrix.itemsize for s in matrix.strides)
    if matrix.dtype == np.float32 and min(matrix.strides) >= 0:
        if cols == 1 or col_stride == 1:
            return _NO_TRANS, max(row_stride if rows > 1 else cols, cols, 1), matrix
        if rows == 1 or row_stride == 1:
            return _TRANS, max(col_stride if cols > 1 else rows, rows, 1), matrix
    return _operand(np.ascontiguousarray(matrix, np.float32))


def sgemm(left, right, alpha, beta, out):
    """``out = alpha * left @ right + beta * out`` in place (out: float32).

    An out whose columns are not contiguous is computed in a contiguous copy,
    then written back.
    """
    m, k = left.shape
    n = right.shape[1]
    if out.dtype != np.float32:
        raise ValueError(f"sgemm needs a float32 C, got {out.dtype}")
    if n > 1 and out.strides[1] != out.itemsize:
        out[...] = sgemm(left, right, alpha, beta, np.ascontiguousarray(out))
        return out
    if _cblas_sgemm is None:
        product = np.matmul(left, right)
        if beta == 0.0:
            np.multiply(product, np.float32(alpha), out=out)
        else:
            out *= np.float32(beta)
            out += np.float32(alpha) * product
        return out
    if m == 0 or n == 0:
        return out
    trans_a, lda, a = _operand(left)
    trans_b, ldb, b = _operand(right)
    ldc = max(out.strides[0] // out.itemsize if m > 1 else n, n, 1)
    _cblas_sgemm(_ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a.ctypes.data, lda,
                 b.ctypes.data, ldb, beta, out.ctypes.data, ldc)
    return out
