"""What the benches share: the thread settings for their headers, and timing.

numba's parallel kernels and our GEMMs never run at the same time (ops are
called one after another), so both may use every core; what matters is that
neither asks for more threads than the cores it was given.  ``describe_threads``
shows the environment variables, numba's thread count and layer, how the
scheduler splits GEMMs, and every BLAS/OpenMP pool threadpoolctl sees (with
its kernel, e.g. OpenBLAS's core type).
"""
import os
import time

import numba
import numpy as np

from pycaffe_mct.cg import scheduler

VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def describe_threads():
    lines = [f"cores available: {len(os.sched_getaffinity(0))}"]
    lines.append(describe_environment(os.environ))
    lines.append(f"numba: {numba.get_num_threads()} threads, layer "
                 f"{numba.config.THREADING_LAYER}")
    lines.append(f"pycaffe_mct GEMMs: split over {scheduler.gemm_threads()} host thread(s), "
                 f"each calling BLAS (pools below as they are now)")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        lines.append("threadpoolctl not installed: BLAS pools unknown")
        return "\n".join(lines)
    for pool in threadpool_info():
        lines.append(f"{pool['user_api']}: {pool['internal_api']} {pool.get('version')} "
                     f"{pool['num_threads']} threads, kernel {pool.get('architecture')}, "
                     f"{os.path.basename(pool['filepath'])}")
    return "\n".join(lines)


def describe_environment(environ):
    """The thread-related variables of ``environ``, on one line."""
    return "env: " + ", ".join(f"{v}={environ.get(v, '(unset)')}" for v in VARIABLES)


def gemm_flops_per_second(size=2048, repeats=3):
    """This machine's float32 GEMM throughput: numpy matmul of two size x size matrices with
    BLAS on every core (pycaffe_mct runs BLAS single-threaded inside its own lanes, so the
    pool is widened for this one measurement)."""
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=len(os.sched_getaffinity(0)), user_api="blas"):
        return 2 * size ** 3 / best_seconds(lambda: a @ a, repeats)


def timed(function):
    """Seconds one call of ``function`` takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def best_seconds(function, repeats):
    """Best of ``repeats`` calls, after one warm-up call (allocation, compilation)."""
    function()
    return min(timed(function) for _ in range(repeats))
