"""Model groups for MCT: MPI_COMM_WORLD split between the primary and auxiliary models.

The paper trains the two MCT models side by side in one job: ranks
``0 .. P-1`` train the primary model M_p data-parallel among themselves,
ranks ``P .. N-1`` the auxiliary model M_a.  The division follows the phase:
in pretraining M_p learns from the large noisy set and M_a from the small
clean one, so the group sizes follow the noisy:clean ratio (configurable);
in calibration both models see the same batches, so the groups are equal.
``resplit`` divides the same world again between phases, without restarting.

A one-rank job cannot be divided: its only rank is in both groups.

Between the models flow the per-sample confidences (an Allgather over every
rank of both groups, so each rank ranks the global batch) and M_a's soft
targets, sent to whichever M_p ranks hold those samples.
"""
import numpy as np

from ..errors import CaffeError

PRIMARY, AUXILIARY = "primary", "auxiliary"
MODELS = (PRIMARY, AUXILIARY)
PRETRAIN, CALIBRATE = "pretrain", "calibrate"


def group_sizes(world_size, phase, noisy_to_clean=1.0):
    """(primary ranks, auxiliary ranks) for ``phase``; each group gets at least one rank.

    Pretraining divides in proportion to ``noisy_to_clean`` (the amount of
    work per model), calibration equally; an odd rank goes to M_p.
    """
    if world_size < 1:
        raise CaffeError(f"a job needs at least one rank, not {world_size}")
    if world_size == 1:
        return 1, 1
    if phase == CALIBRATE:
        share = 0.5
    elif phase == PRETRAIN:
        if not noisy_to_clean > 0:
            raise CaffeError(f"the noisy:clean ratio must be positive, not {noisy_to_clean}")
        share = noisy_to_clean / (1.0 + noisy_to_clean)
    else:
        raise CaffeError(f"unknown MCT phase '{phase}'; expected '{PRETRAIN}' or "
                         f"'{CALIBRATE}'")
    primary = min(max(int(np.floor(world_size * share + 0.5)), 1), world_size - 1)
    return primary, world_size - primary


class ModelGroups:
    """This rank's place in the division of ``world`` for one phase."""

    def __init__(self, world, phase, noisy_to_clean=1.0):
        self.world, self.phase, self.noisy_to_clean = world, phase, noisy_to_clean
        size, rank = world.Get_size(), world.Get_rank()
        self.primary_size, self.auxiliary_size = group_sizes(size, phase, noisy_to_clean)
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

    def resplit(self, phase, noisy_to_clean=None):
        """The division for another phase (collective over the world); frees this one."""
        ratio = self.noisy_to_clean if noisy_to_clean is None else noisy_to_clean
        self.free()
        return ModelGroups(self.world, phase, ratio)

    def free(self):
        if self.comm is not self.world:
            self.comm.Free()
        self.comm = None

    # ---- exchanges between the models -------------------------------------
    def allgather_confidences(self, contributions, num_samples):
        """Every rank's per-sample confidences, for both models, on every rank.

        ``contributions`` maps each model this rank trains to (sample indices,
        rows of confidences); returns {model: array of ``num_samples`` rows},
        NaN where no rank of that model gave a sample.
        """
        shapes = [np.shape(values)[1:] for _, values in contributions.values()]
        row_shape = next((shape for rank_shapes in self.world.allgather(shapes)
                          for shape in rank_shapes), ())
        gathered = {}
        for model in MODELS:
            indices, values = contributions.get(model, ([], np.zeros((0,) + row_shape)))
            all_indices = allgather_array(self.world, np.asarray(indices, np.int64))
            all_values = allgather_array(self.world, np.asarray(values, np.float32))
            dense = np.full((num_samples,) + row_shape, np.nan, np.float32)
            dense[all_indices] = all_values
            gathered[model] = dense
        return gathered

    def exchange_soft_targets(self, needed=None, held_indices=None, held_targets=None):
        """Bring M_a's soft targets for the samples each M_p rank trains on to that rank.

        Every rank calls this.  M_p ranks pass ``needed`` (their sample
        indices) and get the target rows in that order; M_a ranks pass the
        samples they computed targets for and get None.
        """
        held = {} if held_indices is None else {
            int(i): row for i, row in zip(held_indices, np.asarray(held_targets, np.float32))}
        wanted = self.world.allgather(np.asarray(needed if PRIMARY in self.models else [],
                                                 np.int64))
        outgoing = []
        for request in wanted:
            positions = [p for p, index in enumerate(request) if int(index) in held]
            outgoing.append((np.asarray(positions, np.int64),
                             np.array([held[int(request[p])] for p in positions], np.float32)))
        incoming = self.world.alltoall(outgoing)
        if PRIMARY not in self.models:
            return None
        return _assemble(np.asarray(needed, np.int64), incoming)


def _assemble(needed, incoming):
    rows = [r for _, r in incoming if len(r)]
    tail = rows[0].shape[1:] if rows else ()
    targets = np.empty((len(needed),) + tail, np.float32)
    filled = np.zeros(len(needed), bool)
    for positions, values in incoming:
        if len(positions):
            targets[positions] = values
            filled[positions] = True
    if not filled.all():
        missing = needed[~filled][:10].tolist()
        raise CaffeError(f"no auxiliary-model rank holds soft targets for samples {missing}"
                         f"{' ...' if (~filled).sum() > 10 else ''}")
    return targets


def allgather_array(comm, array):
    """The arrays of all ranks of ``comm``, concatenated along axis 0 in rank order.

    The row counts may differ; the other axes and the dtype must agree.
    """
    array = np.ascontiguousarray(array)
    shapes = comm.allgather((array.shape[1:], array.dtype.str))
    if any(s != shapes[0] for s in shapes):
        raise CaffeError(f"allgather_array: ranks disagree on row shape/dtype: {shapes}")
    counts = comm.allgather(array.shape[0])
    row = int(np.prod(array.shape[1:], dtype=np.int64))
    result = np.empty((sum(counts),) + array.shape[1:], array.dtype)
    if result.size:
        sizes = [c * row for c in counts]
        displacements = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        comm.Allgatherv(array.reshape(-1), [result.reshape(-1), (sizes, displacements)])
    return result
