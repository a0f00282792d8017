"""The emulated Sunway core group: spec, plans, scheduler, accounting, profile, timing.

Layers use only ``ops``; everything else here is how those ops map onto one
SW26010 core group and what that mapping would cost.

numba's parallel kernels and BLAS take turns on the same cores, call after
call.  OpenMP threads that spin after a parallel region (libgomp's default)
then steal those cores from BLAS: on a 2-core machine that made a small
convolution tens of times slower.  Unless the user chose otherwise, OpenMP
threads here sleep as soon as their work is done; this must be set before
numba starts its OpenMP pool, i.e. before the first kernel runs.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
