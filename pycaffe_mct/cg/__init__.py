"""The emulated Sunway core group: spec, plans, scheduler, accounting, ops.

Layers use only ``ops``; everything else here is how those ops map onto one
SW26010 core group and what that mapping would cost.

Threads: numba's parallel kernels and BLAS take turns on the same cores, call
after call, so each may use all of them, but no more.  ``OMP_NUM_THREADS``
caps both: BLAS reads it, and numba is given it as ``NUMBA_NUM_THREADS``
unless that is set.  OpenMP threads that spin after a parallel region
(libgomp's default) steal the cores from the BLAS call that follows: on a
2-core machine that made a small convolution tens of times slower, so unless
the user chose otherwise, OpenMP threads here sleep as soon as their work is
done.  Both must be set before numba starts its thread pool, i.e. before the
first kernel runs (and before numba is imported, for the thread count).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ.get("OMP_NUM_THREADS", "").isdigit():
    os.environ.setdefault("NUMBA_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
