"""Which records each of N ranks reads, epoch by epoch.

Every epoch the whole set of record indices is put in an order (the stored
order, or a permutation drawn from the seed and the epoch number) and dealt
out round-robin: rank r takes positions r, r + N, r + 2N, ...  So the ranks'
subsets are disjoint, together they cover the set every epoch, sizes differ by
at most one when N does not divide the set, and a rank beyond the set size
gets nothing (and is told so when it asks for a record).  Without shuffling
this is exactly Caffe's multi-GPU rule ``offset % solver_count == rank``.

Data layers take their rank and world size from ``set_default_partition``,
which the parallel runner calls before nets are built.
"""
import numpy as np

from ..errors import CaffeError

_default = {"rank": 0, "world_size": 1}


def set_default_partition(rank, world_size):
    """Make data layers built from now on read the share of ``rank`` among ``world_size``."""
    if not 0 <= rank < world_size:
        raise CaffeError(f"rank {rank} is not in 0..{world_size - 1}")
    _default.update(rank=int(rank), world_size=int(world_size))


def default_partition():
    """(rank, world_size) that data layers use."""
    return _default["rank"], _default["world_size"]


class Partition:
    """Rank ``rank``'s record order, epoch by epoch, of ``num_records`` records."""

    def __init__(self, num_records, rank=0, world_size=1, seed=0, shuffle=False):
        if not 0 <= rank < world_size:
            raise CaffeError(f"rank {rank} is not in 0..{world_size - 1}")
        self.num_records = int(num_records)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self._cached_epoch, self._cached_order = None, None

    @property
    def epoch_size(self):
        """How many records this rank reads per epoch."""
        return len(range(self.rank, self.num_records, self.world_size))

    def epoch_order(self, epoch):
        """Indices of the records this rank reads in ``epoch``, in reading order."""
        if epoch != self._cached_epoch:
            if self.shuffle:
                order = np.random.default_rng([self.seed, int(epoch)]).permutation(
                    self.num_records)
            else:
                order = np.arange(self.num_records)
            self._cached_epoch, self._cached_order = epoch, order[self.rank::self.world_size]
        return self._cached_order

    def locate(self, position):
        """(epoch, record index) of the ``position``-th record in this rank's stream."""
        size = self.epoch_size
        if size == 0:
            raise CaffeError(f"rank {self.rank} of {self.world_size} gets no records: the "
                             f"data set has only {self.num_records}")
        epoch, offset = divmod(int(position), size)
        return epoch, int(self.epoch_order(epoch)[offset])
