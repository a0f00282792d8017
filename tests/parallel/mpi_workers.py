"""Programs the MPI tests run on every rank: ``mpiexec -n N python mpi_workers.py NAME ...``.

Each checks its results on every rank and raises on a mismatch; the
abort-on-error hook then makes the job exit non-zero with the rank's message.
"""
import os
import signal
import sys
import time

import numpy as np

from pycaffe_mct.parallel.comm import get_world
from pycaffe_mct.parallel.ring import RingAllreduce, make_allreduce


def rank_data(rank, size, seed):
    """The buffer rank ``rank`` contributes; any rank can recompute any other's."""
    return np.random.default_rng([seed, rank, size]).standard_normal(size).astype(np.float32)


def check_allreduce(allreduce, world, size, seed, average):
    contributions = [rank_data(r, size, seed) for r in range(world.Get_size())]
    expected = np.sum(np.array(contributions, dtype=np.float64), axis=0)
    if average:
        expected /= world.Get_size()
    buffer = contributions[world.Get_rank()].copy()
    result = allreduce.allreduce(buffer, average=average)
    assert result.base is buffer or result is buffer or np.shares_memory(result, buffer)
    np.testing.assert_allclose(buffer, expected.reshape(buffer.shape), rtol=1e-5, atol=1e-5,
                               err_msg=f"{allreduce.name} size {size} average {average}")
    everyone = world.allgather(buffer.tobytes())
    assert all(b == everyone[0] for b in everyone), "ranks ended with different sums"


def ring(algorithm):
    """Sizes 0, 1, N-1, N, N+1, odd, large; several in flight at once; small pieces."""
    world = get_world()
    n = world.Get_size()
    allreduce = make_allreduce(world, algorithm)
    for seed, size in enumerate([0, 1, max(n - 1, 0), n, n + 1, 1001, (1 << 18) + 3]):
        check_allreduce(allreduce, world, size, seed, average=seed % 2 == 1)
    if algorithm == "ring":
        check_allreduce(RingAllreduce(world, piece_bytes=12), world, 999, 99, average=True)
    buffers = [rank_data(world.Get_rank(), size, 7) for size in (5000, 3, 70000)]
    handles = [allreduce.start(b) for b in buffers]
    while not all([h.test() for h in handles]):
        pass
    for size, buffer in zip((5000, 3, 70000), buffers):
        expected = sum(rank_data(r, size, 7).astype(np.float64) for r in range(n))
        np.testing.assert_allclose(buffer, expected, rtol=1e-5, atol=1e-5)
    print(f"rank {world.Get_rank()}: {algorithm} ok", flush=True)


def groups(noisy_to_clean):
    """Division, re-division, group-local reduction, gathered rows, state hand-over."""
    from pycaffe_mct.parallel.groups import (AUXILIARY, CALIBRATE, PRETRAIN, PRIMARY,
                                             ModelGroups, group_sizes)
    world = get_world()
    rank, size = world.Get_rank(), world.Get_size()
    groups = ModelGroups(world, PRETRAIN, float(noisy_to_clean))
    for phase in (PRETRAIN, CALIBRATE):
        primary_size, _ = group_sizes(size, phase, float(noisy_to_clean))
        assert groups.phase == phase
        if size > 1:
            assert groups.models == ((PRIMARY,) if rank < primary_size else (AUXILIARY,))
        expected_members = groups.ranks_of(groups.model)
        assert groups.comm.Get_size() == len(expected_members)
        members = groups.comm.allgather(rank)
        assert members == expected_members, (members, expected_members)
        check_gathered_rows(groups, rank)
        if phase == PRETRAIN:
            previous = groups
            groups = groups.resplit(CALIBRATE)
            check_hand_over(world, previous, groups)
    print(f"rank {rank}: groups ok ({groups.primary_size}+{groups.auxiliary_size})", flush=True)


def row(name, index):
    return np.array([index + (0.5 if name == "primary" else 0.25), -index], np.float32)


def check_gathered_rows(groups, rank):
    """Each model's rows 0..S-1 are dealt round-robin over its group's ranks; M_p's
    ranks add the labels (a row of shape ())."""
    from pycaffe_mct.parallel.groups import allgather_rows
    samples = 11
    pieces = {}
    for model in groups.models:
        members = groups.ranks_of(model)
        mine = np.arange(members.index(rank), samples, len(members))
        pieces[model] = (mine, [row(model, i) for i in mine])
        if model == "primary":
            pieces["label"] = (mine, mine.astype(np.float32))
    gathered = allgather_rows(groups.world, pieces, samples)
    assert sorted(gathered) == ["aux", "label", "primary"]
    for model in ("aux", "primary"):
        np.testing.assert_array_equal(gathered[model], [row(model, i) for i in range(samples)])
    np.testing.assert_array_equal(gathered["label"], np.arange(samples))


def check_hand_over(world, previous, groups):
    """Ranks new to a model get the arrays of the root of that model's old group."""
    from pycaffe_mct.parallel.groups import broadcast_state
    rank = world.Get_rank()
    for model in ("primary", "aux"):
        source = previous.ranks_of(model)[0]
        receivers = [r for r in groups.ranks_of(model) if r not in previous.ranks_of(model)]
        if not receivers:
            continue
        arrays = [np.full(5, rank, np.float32), np.array([rank, 7 * rank], np.int64)]
        broadcast_state(world, arrays if rank in receivers or rank == source else None,
                        source, receivers)
        if rank in receivers:
            np.testing.assert_array_equal(arrays[0], np.full(5, source))
            np.testing.assert_array_equal(arrays[1], [source, 7 * source])


def fail(how):
    """Rank 1 fails in the middle of allreduces while the others keep reducing."""
    from pycaffe_mct.cli import run_command
    from pycaffe_mct.errors import CaffeError
    world = get_world()
    allreduce = make_allreduce(world, "ring")
    buffer = np.ones(1 << 16, np.float32)
    for iteration in range(1000):
        handle = allreduce.start(buffer)
        if world.Get_rank() == 1 and iteration == 3:
            if how == "exception":
                raise ValueError("boom on purpose")
            if how == "kill":
                handle.test()
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "command":
                def failing_command(argv):
                    raise CaffeError("bad solver on purpose")
                sys.exit(run_command(failing_command, []))
        handle.wait()
        buffer[...] = 1
    time.sleep(60)        # not reached when the job is torn down


WORKERS = {"ring": ring, "groups": groups, "fail": fail}

if __name__ == "__main__":
    WORKERS[sys.argv[1]](*sys.argv[2:])
