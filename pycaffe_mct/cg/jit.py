"""How the core group's numba kernels are compiled and how they index arrays.

Every kernel (in the ``ops`` family modules, beside the op that launches it)
is a pure function of arrays and integers, compiled with ``cache=True`` so
that a second process starts without recompiling, and ``nogil`` so that
data-loading threads keep running meanwhile.  Its ``lo``/``hi`` arguments
select a range of the outermost loop's units: the executor passes a CPE tile's
range (literal) or all units at once (fast).  Arrays are C-contiguous.

Speed: the kernels address flat views of their arrays with unsigned (uint64)
offsets.  numba guards every signed index against Python's negative indexing,
and that branch keeps LLVM from vectorising a loop; with unsigned offsets the
long innermost loops (ReLU, sums, softmax along inner positions, zeroing,
im2col's row copies) run in vector instructions.  In numba, uint64 mixed with
int64 gives float64, so every operand of an offset is made uint64 first (``U``).
"""
import numba

JIT = dict(nogil=True, cache=True)
U = numba.uint64
