"""The emulated Sunway core group: spec, plans, scheduler, accounting, ops.

Layers use only ``ops``; everything else here is how those ops map onto one
SW26010 core group and what that mapping would cost.

Threads: numba's parallel kernels and BLAS take turns on the same cores, call
after call, so each may use all of them, but no more.  ``OMP_NUM_THREADS``
caps both: BLAS reads it, and numba is given it as ``NUMBA_NUM_THREADS``
unless that is set.  How long an OpenMP thread waits, spinning, for the next
parallel region is a trade: libgomp's default (300,000 spins, milliseconds)
steals the cores from the BLAS call that follows (on a 2-core machine a small
convolution ran tens of times slower), while a thread that sleeps at once
takes 30-50 us to wake for the next region, and a ResNet-50 step runs
thousands of them.  So a process alone on its node spins 10,000 times (a few
hundred microseconds: ResNet-50 b8's step 5-10 % faster than with no spin),
and ranks that share a node sleep at once, leaving the cores to each other.
A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left alone.  All of
this must be set before numba starts its thread pool, i.e. before the first
kernel runs (and before numba is imported, for the thread count).
"""
import os

# Processes on this node as the MPI launcher (MPICH's Hydra, Open MPI) counts them.
LOCAL_RANK_COUNTS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
SPIN_ALONE = "10000"


def _shares_the_node():
    """Whether other ranks of an MPI job run on this node."""
    counts = (os.environ.get(name, "") for name in LOCAL_RANK_COUNTS)
    return any(count.isdigit() and int(count) > 1 for count in counts)


if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    if _shares_the_node():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = SPIN_ALONE
if os.environ.get("OMP_NUM_THREADS", "").isdigit():
    os.environ.setdefault("NUMBA_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
