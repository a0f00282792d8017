"""Where the two MCT models run: in one process, replicated on every rank, or grouped.

* One process: both models, whole batches, no MPI.
* ``replicated``: every rank runs both models on its share of each batch;
  each model is data-parallel over the whole world.
* ``grouped`` (the paper's system, its Fig. 2; the default for N >= 2): the
  world is split into M_p's group and M_a's group (``parallel.groups``), each
  model data-parallel within its own group.  Pretraining divides the ranks by
  the models' work per iteration, calibration equally; the division is made
  again at the phase change, and a rank that changes model receives that
  model's state from the root of the group that trained it.

A rank's *share* of a global batch of B samples, in a group of n ranks where
it is rank r, is the batch positions r, r + n, r + 2n, ...: exactly the
samples the data layers' partition (``data.partition``) deals that rank, at
the places one process reads them, so rows gathered by position line up with
the one-process batch.
"""
import numpy as np

PRIMARY, AUX = "primary", "aux"   # the names parallel.groups uses
LAYOUTS = ("grouped", "replicated")


class Seat:
    """One model on this rank: its data-parallel communicator (None in one process),
    this rank's place in it, and the ranks of the world that train the model."""

    def __init__(self, comm, rank, size, world_ranks):
        self.comm, self.rank, self.size, self.world_ranks = comm, rank, size, world_ranks

    def positions(self, batch):
        """This rank's sample positions in a global batch of ``batch``."""
        return np.arange(self.rank, batch, self.size)

    @property
    def is_root(self):
        return self.rank == 0


class OneProcess:
    """Both models in this process."""

    world = None

    def __init__(self):
        self.seats = {AUX: Seat(None, 0, 1, [0]), PRIMARY: Seat(None, 0, 1, [0])}

    def for_phase(self, phase, problem):
        return self

    def describe(self, phase):
        return "both models in this process"


class Replicated:
    """Both models on every rank, each data-parallel over the world."""

    def __init__(self, world):
        self.world = world
        rank, size = world.Get_rank(), world.Get_size()
        everyone = list(range(size))
        self.seats = {AUX: Seat(world, rank, size, everyone),
                      PRIMARY: Seat(world, rank, size, everyone)}

    def for_phase(self, phase, problem):
        return self

    def describe(self, phase):
        return (f"both models on ranks 0-{self.world.Get_size() - 1} (replicated: each "
                f"data-parallel over all ranks)")

    def role(self):
        return "M_p and M_a, replicated"


class Grouped:
    """M_p on one group of ranks, M_a on the other (``parallel.groups.ModelGroups``)."""

    def __init__(self, world, groups):
        self.world, self.groups = world, groups
        model = groups.model
        self.seats = {model: Seat(groups.comm, groups.comm.Get_rank(), groups.comm.Get_size(),
                                  groups.ranks_of(model))}

    @classmethod
    def divide(cls, world, phase, noisy_to_clean, problem):
        from ..parallel.groups import ModelGroups
        return cls(world, ModelGroups(world, phase, noisy_to_clean, problem))

    def for_phase(self, phase, problem):
        if phase == self.groups.phase:
            return self
        return Grouped(self.world, self.groups.resplit(phase))

    def describe(self, phase):
        return self.groups.describe()

    def role(self):
        """This rank's part, for fault messages: ``M_a's group, rank 0 of 2``."""
        (model, seat), = self.seats.items()
        return (f"{'M_p' if model == PRIMARY else 'M_a'}'s group, rank {seat.rank} of "
                f"{seat.size}")

    def newcomers(self, previous):
        """{model: (world rank of its old root, world ranks new to it)} for the
        models that gained ranks since ``previous``."""
        moves = {}
        for model in (PRIMARY, AUX):
            before = previous.groups.ranks_of(model)
            new = [rank for rank in self.groups.ranks_of(model) if rank not in before]
            if new:
                moves[model] = (before[0], new)
        return moves
