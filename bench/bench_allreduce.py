"""Bus bandwidth of our ring allreduce against MPI's own allreduces.

``python bench/bench_allreduce.py`` starts itself under ``mpiexec -n 2`` and
``-n 4`` on this machine and prints one row per (ranks, buffer size): the bus
bandwidth (NCCL-tests' definition: bytes x 2(N-1)/N / seconds, comparable
across N) of three algorithms, and the faster MPI time / ours (above 1: ours
is faster).  The three are our ring, ``MPI_Iallreduce`` + wait (what
``--allreduce mpi`` runs, so that the reduction can overlap the backward pass)
and the blocking ``MPI_Allreduce`` (often faster when nothing overlaps it).
All are timed in the same run, taking turns, each one's best of several
repetitions.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

SIZES_MB = (1, 16, 128)
RANKS = (2, 4)


def _best_seconds(algorithms, comm, buffer, repeats):
    """Each algorithm's best time over ``repeats`` rounds, the algorithms taking turns."""
    best = [float("inf")] * len(algorithms)
    for _ in range(repeats):
        for index, allreduce in enumerate(algorithms):
            buffer[...] = 1
            comm.Barrier()
            begin = time.perf_counter()
            allreduce.allreduce(buffer)
            elapsed = comm.allreduce(time.perf_counter() - begin, op=_mpi().MAX)
            best[index] = min(best[index], elapsed)
    return best


def _mpi():
    from pycaffe_mct.parallel.comm import mpi_module
    return mpi_module()


class BlockingAllreduce:
    """MPI's blocking Allreduce in place: the baseline a plain MPI user writes."""

    def __init__(self, comm):
        self.mpi = _mpi()
        self.comm = comm

    def allreduce(self, buffer):
        self.comm.Allreduce(self.mpi.IN_PLACE, [buffer, self.mpi.FLOAT], self.mpi.SUM)
        return buffer


def measure(sizes_mb, repeats):
    """Run on every rank; rank 0 prints the rows."""
    from pycaffe_mct.parallel.ring import make_allreduce
    comm = _mpi().COMM_WORLD
    algorithms = [make_allreduce(comm, "ring"), make_allreduce(comm, "mpi"),
                  BlockingAllreduce(comm)]
    size = comm.Get_size()
    for megabytes in sizes_mb:
        buffer = np.ones(megabytes * (1 << 20) // 4, dtype=np.float32)
        for algorithm in algorithms:                   # warm-up: page faults, connections
            algorithm.allreduce(buffer)
        ring_s, iallreduce_s, allreduce_s = _best_seconds(algorithms, comm, buffer, repeats)
        factor = buffer.nbytes * 2 * (size - 1) / size / 1e9
        if comm.Get_rank() == 0:
            print(f"| {size} | {megabytes:>4} MB | {factor / ring_s:8.2f} "
                  f"| {factor / iallreduce_s:8.2f} | {factor / allreduce_s:8.2f} "
                  f"| {min(iallreduce_s, allreduce_s) / ring_s:5.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=RANKS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        measure(SIZES_MB, args.repeats)
        return 0
    print("| ranks | buffer | ours GB/s (bus) | MPI_Iallreduce+wait GB/s (bus) "
          "| MPI_Allreduce GB/s (bus) | faster MPI time / ours |")
    print("|---|---|---|---|---|---|", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    for ranks in args.ranks:
        subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, os.path.abspath(__file__),
                        "--worker", "--repeats", str(args.repeats)], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
