"""Model groups for MCT: MPI_COMM_WORLD split between the primary and auxiliary models.

The paper trains the two MCT models side by side in one job: ranks
``0 .. P-1`` train the primary model M_p data-parallel among themselves,
ranks ``P .. N-1`` the auxiliary model M_a.  The division follows the phase:
in pretraining M_p learns from the noisy batches and M_a from the smaller
clean ones, so the group sizes follow the ratio of their work (noisy:clean);
in calibration both models see the same batches, so the groups are equal.
``resplit`` divides the same world again between phases, without restarting;
``broadcast_state`` then gives a rank that changed model that model's state.

A one-rank job cannot be divided: its only rank is in both groups.

Between the models flow each model's scores for its share of the global
batch (``allgather_rows``, an Allgatherv over every rank of both groups), so
that every rank ranks the whole batch and every M_p rank finds M_a's scores
for its samples among them.
"""
import math

import numpy as np

from ..errors import CaffeError
from .comm import mpi_module

PRIMARY, AUXILIARY = "primary", "aux"
MODELS = (PRIMARY, AUXILIARY)
PRETRAIN, CALIBRATE = "pretrain", "calibrate"


def group_sizes(world_size, phase, noisy_to_clean=1.0, problem=None):
    """(primary ranks, auxiliary ranks) for ``phase``; each group gets at least one rank.

    Pretraining divides in proportion to ``noisy_to_clean`` (the work per model
    and iteration), calibration equally, an odd rank going to M_p.
    ``problem(primary, auxiliary)`` may name why a division does not work (a
    batch that does not split over a group's ranks) or return None: pretraining
    then takes the workable division nearest the proportional one, calibration
    has no other choice and raises the problem.
    """
    if world_size < 1:
        raise CaffeError(f"a job needs at least one rank, not {world_size}")
    if world_size == 1:
        return 1, 1
    if phase == CALIBRATE:
        candidates = [math.ceil(world_size / 2)]
    elif phase == PRETRAIN:
        if not noisy_to_clean > 0:
            raise CaffeError(f"the noisy:clean ratio must be positive, not {noisy_to_clean}")
        exact = world_size * noisy_to_clean / (1.0 + noisy_to_clean)
        candidates = sorted(range(1, world_size), key=lambda p: (abs(p - exact), -p))
    else:
        raise CaffeError(f"unknown MCT phase '{phase}'; expected '{PRETRAIN}' or "
                         f"'{CALIBRATE}'")
    problems = [problem(p, world_size - p) if problem else None for p in candidates]
    for primary, found in zip(candidates, problems):
        if found is None:
            return primary, world_size - primary
    raise CaffeError(f"{world_size} ranks cannot be divided between M_p and M_a for "
                     f"{phase}: {problems[0]}")


def _span(ranks):
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"


class ModelGroups:
    """This rank's place in the division of ``world`` for one phase."""

    def __init__(self, world, phase, noisy_to_clean=1.0, problem=None):
        self.world, self.phase = world, phase
        self.noisy_to_clean, self.problem = noisy_to_clean, problem
        size, rank = world.Get_size(), world.Get_rank()
        self.primary_size, self.auxiliary_size = group_sizes(size, phase, noisy_to_clean,
                                                             problem)
        if size == 1:
            self.models, self.comm = MODELS, world
        else:
            self.models = (PRIMARY,) if rank < self.primary_size else (AUXILIARY,)
            self.comm = world.Split(MODELS.index(self.models[0]), rank)

    @property
    def model(self):
        """The model this rank trains (M_p for a one-rank job, which trains both)."""
        return self.models[0]

    def ranks_of(self, model):
        """World ranks of ``model``'s group."""
        if self.world.Get_size() == 1:
            return [0]
        if model == PRIMARY:
            return list(range(self.primary_size))
        return list(range(self.primary_size, self.world.Get_size()))

    def describe(self):
        """``M_p on ranks 0-2, M_a on rank 3``: the division as the log shows it."""
        return (f"M_p on {_span(self.ranks_of(PRIMARY))}, "
                f"M_a on {_span(self.ranks_of(AUXILIARY))}")

    def resplit(self, phase, noisy_to_clean=None):
        """The division for another phase (collective over the world); frees this one."""
        ratio = self.noisy_to_clean if noisy_to_clean is None else noisy_to_clean
        self.free()
        return ModelGroups(self.world, phase, ratio, self.problem)

    def free(self):
        if self.comm is not self.world:
            self.comm.Free()
        self.comm = None


def broadcast_state(world, arrays, source, receivers):
    """Copy ``arrays`` from world rank ``source`` into the same arrays of ``receivers``.

    Collective over the world (ranks outside pass anything, e.g. None): a
    communicator of the source and the receivers is split off and each array
    is broadcast from the source in turn.
    """
    mpi, rank = mpi_module(), world.Get_rank()
    inside = rank == source or rank in receivers
    comm = world.Split(0 if inside else mpi.UNDEFINED, 0 if rank == source else rank + 1)
    if comm == mpi.COMM_NULL:
        return
    try:
        for array in arrays:
            comm.Bcast(array, root=0)
    finally:
        comm.Free()


def allgather_rows(world, pieces, num_rows):
    """Rows of one batch held by different ranks, gathered on every rank.

    ``pieces`` maps names (a model's scores, the labels) to (row indices,
    float32 rows) this rank holds; returns {name: (num_rows, ...) array} with
    every rank's rows in place (NaN where no rank gave one).  Two collectives:
    an allgather of who holds which rows, then one Allgatherv of the rows.
    """
    mine = sorted((name, np.asarray(indices, np.int64), np.ascontiguousarray(rows, np.float32))
                  for name, (indices, rows) in pieces.items())
    layout = world.allgather([(name, indices, rows.shape[1:]) for name, indices, rows in mine])
    sizes = [sum(len(indices) * math.prod(shape) for _, indices, shape in entries)
             for entries in layout]
    flat = np.concatenate([rows.ravel() for _, _, rows in mine] + [np.zeros(0, np.float32)])
    received = np.empty(sum(sizes), np.float32)
    displacements = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    world.Allgatherv(flat, [received, (sizes, displacements)])
    gathered, offset = {}, 0
    for entries in layout:
        for name, indices, shape in entries:
            size = len(indices) * math.prod(shape)
            dense = gathered.setdefault(name, np.full((num_rows,) + shape, np.nan, np.float32))
            dense[indices] = received[offset:offset + size].reshape((len(indices),) + shape)
            offset += size
    return gathered
