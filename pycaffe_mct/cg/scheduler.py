"""The scheduler: executes kernel plans on the host.

Two executors run the same plan, behind one interface (``gemm``, ``units``,
``lane_count``), chosen once: ``PYCAFFE_MCT_CG_MODE=literal`` at start-up, or
``execution("literal")`` around a block (tests):

* ``FastExecutor`` (default): the host runs the whole plan in as few large
  calls as possible.  A GEMM is one single-threaded BLAS call per host thread,
  each on a contiguous share of C's rows (or columns), i.e. of the mesh's CPE
  rows (columns); a unit kernel is a numba function compiled ``nogil`` and
  cached on disk.  A ``parallel=True`` one is one call whose ``prange`` hands
  each host thread a contiguous run of units, i.e. the shares of a contiguous
  group of CPEs (numba's static chunking); a serial one whose op marks its
  units ``spread`` is called once per host thread on such a share when the
  call is large.  Serial kernels compile two to four times faster than
  parfors, which made most of a cold start (docs/speed.md).
  Executing 64 tile programs literally costs half the machine or more;
  merging them changes only the order of floating-point summation inside a
  GEMM.
* ``LiteralExecutor``: every tile of the plan runs as its own call, CPE by
  CPE, GEMM blocks with the plan's K steps, and a layer's chunks run in order
  on one thread.  Tests use it to show that the plan covers the iteration
  space exactly once; it is the emulator's simulator mode.

Both see the same calls: what an op asks for (chunks, padding) never depends
on the executor.  Plans are built only for the literal executor or while
accounting records, so a training step with the fast one pays one test per
kernel call.

Host threads: the fast executor's ``HostThreads``, counted once, on first use:
numba's thread count (``OMP_NUM_THREADS`` caps it, see the package doc).  BLAS is set to one thread per call unless the user set
``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``: OpenBLAS's own pool of spinning
threads, taking turns with numba's pool call after call, made training several
times slower on a shared 2-core machine, while GEMM shares on sleeping Python
threads (BLAS releases the GIL) do not fight numba for the cores.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np

from . import accounting, blas, register_gemm
from .plan import (gemm_cpe_tiles, plan_gemm, plan_units, reduction_steps, split_grid,
                   unit_tiles)

_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class HostThreads:
    """The host threads GEMM shares and a layer's lanes run on, counted once, on first
    use: numba's thread count with BLAS held to one thread per call, or 1 when the user
    set BLAS's own thread count (or threadpoolctl is missing).  ``count`` fixes it (tests).
    """

    def __init__(self, count=None):
        self._count = count
        self._pool = None

    @property
    def count(self):
        if self._count is None:
            self._count = _counted_threads()
        return self._count

    def pool(self):
        """The sleeping helper threads (one fewer than the host threads)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max(self.count - 1, 1),
                                            thread_name_prefix="cg-host")
        return self._pool


def _counted_threads():
    if any(v in os.environ for v in _BLAS_THREAD_VARIABLES):
        return 1
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return 1
    threadpool_limits(1, user_api="blas")
    return numba.get_num_threads()


class FastExecutor:
    """Each call in as few large host calls as possible (see the module doc), on the
    threads of its ``host`` (a ``HostThreads``)."""

    name = "fast"
    needs_plans = False

    def __init__(self, host):
        self.host = host

    def gemm(self, plan, left, right, alpha, beta, out):
        return _gemm_blas(self.host, left, right, alpha, beta, out)

    def units(self, plan, count, run, spread):
        threads = max(1, min(self.host.count, count)) if spread and not _in_lane() else 1
        bounds = [count * t // threads for t in range(threads + 1)]
        _on_host_threads(self.host, run, list(zip(bounds, bounds[1:])))

    def lane_count(self, runs):
        """Host threads to spread a layer's runs of chunks over."""
        return 1 if _in_lane() else min(self.host.count, runs)

    def lane_pool(self):
        return self.host.pool()


class LiteralExecutor:
    """Each tile of each plan as its own call, one after another (see the module doc)."""

    name = "literal"
    needs_plans = True

    def gemm(self, plan, left, right, alpha, beta, out):
        return _gemm_tiles(plan, left, right, alpha, beta, out)

    def units(self, plan, count, run, spread):
        for _, lo, hi in unit_tiles(plan):
            run(lo, hi)

    def lane_count(self, runs):
        return 1


EXECUTORS = {executor.name: executor
             for executor in (FastExecutor(HostThreads()), LiteralExecutor())}


def _chosen(name, source):
    if name not in EXECUTORS:
        raise ValueError(f"{source}={name!r}; expected one of {tuple(EXECUTORS)}")
    return EXECUTORS[name]


_chosen_executor = [_chosen(os.environ.get("PYCAFFE_MCT_CG_MODE", "fast"), "PYCAFFE_MCT_CG_MODE")]


def executor():
    """The executor kernel calls run on."""
    return _chosen_executor[0]


@contextmanager
def execution(name):
    """Run the block on the executor named ``name`` ("fast" or "literal")."""
    chosen = _chosen(name, "execution mode")
    previous, _chosen_executor[0] = _chosen_executor[0], chosen
    try:
        yield
    finally:
        _chosen_executor[0] = previous


def _planned(run, make_plan):
    """The call's plan when the executor or the accounting needs one (recorded), else None."""
    if not (run.needs_plans or accounting.active()):
        return None
    plan = make_plan()
    accounting.record(plan)
    return plan


# ---- GEMM ----------------------------------------------------------------------

def gemm(left, right, alpha, beta, out):
    """``out = alpha * left @ right + beta * out`` over the plan's mesh blocks.

    ``left``/``right`` are the operands as used (transposed views are fine);
    ``out`` None returns a new array (beta ignored).
    """
    m, k = left.shape
    n = right.shape[1]
    read_c = out is not None and beta != 0.0
    run = executor()
    return run.gemm(_planned(run, lambda: plan_gemm(m, n, k, read_c)), left, right, alpha,
                    beta, out)


def _gemm_blas(host, left, right, alpha, beta, out):
    if out is None:
        out, beta = np.empty((left.shape[0], right.shape[1]), np.result_type(left, right)), 0.0
    if beta == 0.0:
        _matmul(host, left, right, out)
        if alpha != 1.0:
            out *= np.float32(alpha)
        return out
    # One BLAS call per share, in place: numpy's matmul has no beta (see ``blas.py``).
    _split_rows(host, left, right, out, lambda a, b, c: blas.sgemm(a, b, alpha, beta, c))
    return out


# Below this many multiply-adds a GEMM is not worth handing to other threads.
SPLIT_MACS = 1 << 21


def gemm_threads():
    """Host threads the fast executor splits GEMMs and lanes over.  Ops size their
    chunks by it whichever executor runs, so the literal one runs the same chunks."""
    return EXECUTORS["fast"].host.count


def _matmul(host, left, right, out):
    """out = left @ right: one call per host thread on its share of C's rows or columns, of
    ``register_gemm`` where it applies (shares of whole 8-row blocks), else of BLAS."""
    if register_gemm.applies(left, right, out):
        _split_rows(host, left, right, out, register_gemm.multiply, register_gemm.ROWS)
    elif left.shape[0] >= right.shape[1]:
        _split_rows(host, left, right, out, _numpy_matmul)
    else:
        _split_rows(host, right.T, left.T, out.T,
                    lambda a, b, c: _numpy_matmul(b.T, a.T, c.T))


def _numpy_matmul(left, right, out):
    np.matmul(left, right, out=out)


def _split_rows(host, left, right, out, multiply, block=1):
    """multiply(left share, right, out share) per host thread, on shares of C's rows (whole
    ``block``s of them)."""
    m, k = left.shape
    threads = min(host.count, m // block)
    if threads <= 1 or m * right.shape[1] * k < SPLIT_MACS or _in_lane():
        multiply(left, right, out)
        return
    bounds = [block * ((m // block) * t // threads) for t in range(threads + 1)]
    _on_host_threads(host, multiply,
                     [(left[a:b], right, out[a:b]) for a, b in zip(bounds, bounds[1:])])


def _on_host_threads(host, call, shares):
    """call(*share) for every share, the first on this thread, the others on the host's
    helper threads; returns when all are done."""
    others = [host.pool().submit(call, *share) for share in shares[1:]]
    try:
        call(*shares[0])
    finally:
        for share in others:
            share.result()


# ---- lanes: a layer's chunks spread over the host threads -----------------------

_lane = threading.local()


def _in_lane():
    return getattr(_lane, "inside", False)


# A layer's chunks form at most this many runs; lanes take runs as they come free.
RUNS = 8
# ... but a weight gradient's chunks whose per-run sums would take at least this many floats
# form one run per host thread: ResNet-50's widest layers kept up to seven 8-17 MB sums.
LARGE_RUN_SUM_FLOATS = 1 << 20


def weight_sum_runs(sum_floats):
    """Runs for chunks that keep a weight-gradient sum of ``sum_floats`` per run."""
    return gemm_threads() if sum_floats >= LARGE_RUN_SUM_FLOATS else RUNS


def balanced_chunks(count, step):
    """(lo, hi) ranges of ``count`` images, about ``step`` each, for ``lanes``: when there
    are fewer than ``RUNS`` of them their number is made a multiple of the host threads
    and their sizes even, so no lane waits for another's last chunk (8 images in chunks
    of 3 kept one of two threads busy with 6)."""
    chunks = -(-count // max(step, 1))
    threads = gemm_threads()
    if chunks < RUNS and chunks % threads:
        chunks = min(count, chunks + threads - chunks % threads)
    bounds = [count * i // chunks for i in range(chunks + 1)]
    return list(zip(bounds, bounds[1:]))


def lanes(chunks, body, run_count=RUNS):
    """``body(lane, run, lo, hi)`` for every chunk ``(lo, hi)`` of a layer's images.

    The chunks are cut into up to ``run_count`` contiguous runs.  On the fast executor the
    host threads are lanes that each take the next free run and do its chunks
    in order; inside a lane a GEMM is one single-threaded BLAS call, so a thread
    keeps its chunk's unfolded columns in its own core's cache from the
    unfolding to the GEMM.  ``lane`` names the thread (for its scratch buffers),
    ``run`` the run: a sum kept per run and added up in run order comes out the
    same whichever lane took which run, and with any thread count.  The literal
    executor, and any executor while accounting records, runs the chunks in
    order on this thread, so their plans are recorded in order.
    """
    cuts = [len(chunks) * r // run_count for r in range(run_count + 1)]
    runs = [chunks[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
    chosen = executor()
    count = 1 if accounting.active() else chosen.lane_count(len(runs))
    taken = iter(range(len(runs)))          # next() on it is atomic: each run is taken once
    failed = []

    def work(lane):
        outer = _in_lane()
        _lane.inside = outer or count > 1
        try:
            for r in taken:
                if failed:
                    break
                for lo, hi in runs[r]:
                    body(lane, r, lo, hi)
        except BaseException:
            failed.append(lane)             # the other lanes take no further runs
            raise
        finally:
            _lane.inside = outer
    others = [chosen.lane_pool().submit(work, lane) for lane in range(1, count)]
    try:
        work(0)
    finally:
        for other in others:
            other.result()


def _gemm_tiles(plan, left, right, alpha, beta, out):
    """Each CPE's C blocks over its K slice, in the plan's K steps (literal executor); a split-K
    plan's partial blocks are added up its reduction tree before alpha and beta."""
    if out is None:
        out = np.empty((left.shape[0], right.shape[1]), dtype=np.result_type(left, right))
        beta = 0.0
    bk = plan.details["bk"]
    group = split_grid(plan.details["split"], plan.spec)[2]
    partial = {}
    for cpe, rows, cols, ks in gemm_cpe_tiles(plan):
        block = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=out.dtype)
        for k0 in range(ks.start, ks.stop, bk):
            k1 = min(k0 + bk, ks.stop)
            block += left[rows, k0:k1] @ right[k0:k1, cols]
        partial[(int(group[cpe]), rows.start, cols.start)] = (rows, cols, block)
    for step in reduction_steps(plan.details["split"]):
        for receiver, sender, _ in step:
            for key in [key for key in partial if key[0] == sender]:
                partial[(receiver,) + key[1:]][2][...] += partial.pop(key)[2]
    for rows, cols, block in partial.values():
        if alpha != 1.0:
            block *= np.float32(alpha)
        if beta != 0.0:
            block += np.float32(beta) * out[rows, cols]
        out[rows, cols] = block
    return out


# ---- independent units -----------------------------------------------------------

# Below this many bytes in and out a unit kernel is not worth handing to other threads.
SPREAD_BYTES = 1 << 20


def units(kernel, count, in_bytes, out_bytes, flops, run, spread=False):
    """Run a kernel of ``count`` independent units; ``run(lo, hi)`` executes units [lo, hi).

    ``in_bytes``/``out_bytes``/``flops`` are per unit and feed the plan.
    ``spread``: ``run`` may execute disjoint ranges at once (on other threads; it
    writes nothing two units share and returns nothing), so the fast executor
    splits a call of at least ``SPREAD_BYTES`` over the host threads.  The
    results do not depend on the split.
    """
    executing = executor()
    plan = _planned(executing, lambda: plan_units(kernel, int(count), int(in_bytes),
                                                  int(out_bytes), int(flops)))
    large = count * (in_bytes + out_bytes) >= SPREAD_BYTES
    executing.units(plan, count, run, spread and large)


def elementwise(kernel, flops, function, out, *inputs):
    """``function(*inputs, out)`` element by element; inputs broadcast to ``out``'s shape.

    ``flops`` is per element.  On the literal executor each tile sees flat slices.
    """
    def run(lo, hi):
        if lo == 0 and hi == out.size:
            function(*inputs, out)
            return
        flat = [np.broadcast_to(x, out.shape).reshape(-1)[lo:hi] if np.ndim(x) else x
                for x in inputs]
        function(*flat, out.reshape(-1)[lo:hi])
    arrays = sum(1 for x in inputs if np.ndim(x))
    element = out.dtype.itemsize
    units(kernel, out.size, arrays * element, element, flops, run)
