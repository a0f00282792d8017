"""Synchronous data parallelism: every rank a replica, gradients averaged each update.

``init_parallel()`` runs before any net is built (the ``train`` command calls
it first): it gives each rank its share of the training records
(``pycaffe_mct.data.partition``), silences the log of every rank but 0, and
makes any failing rank abort the whole job.  ``attach_data_parallel(solver)``
then adds one solver callback which

* on the first iteration checks that all ranks agree on the iteration, seed
  and iteration settings (a resumed run may use a different number of ranks:
  every rank restores the same snapshot) and broadcasts rank 0's weights;
* after backward averages the gradients over the ranks (``GradientSync``:
  buckets reduced while backward still runs) so every replica applies the
  same update, and N ranks with batch b follow one process with batch N*b;
* agrees on Ctrl-C/SIGHUP requests, so all ranks stop at the same iteration
  and only rank 0 writes snapshots.

Only rank 0 logs, tests and snapshots (the solver's ``is_root``).  The rank
count is logged at the start; Caffe's SolverState has no field for it, and
snapshots stay readable by BVLC Caffe.
"""
import os

from ..data.partition import default_partition, set_default_partition
from ..errors import CaffeError
from ..solvers.log import default_writer
from ..solvers.solver import NONE, SNAPSHOT, STOP
from .buckets import DEFAULT_BUCKET_BYTES, GradientSync
from .comm import get_world, mpi_module
from .ring import make_allreduce

_ACTION_ORDER = (NONE, SNAPSHOT, STOP)    # when ranks differ, the later one wins


def init_parallel(comm=None):
    """Prepare this process as one rank of ``comm`` (default MPI_COMM_WORLD); returns it.

    Call before building nets: data layers read their partition when built.
    A failing rank aborts the whole world, whatever ``comm`` is.
    """
    world = get_world()
    comm = world if comm is None else comm
    set_default_partition(comm.Get_rank(), comm.Get_size())
    if world.Get_rank() != 0:
        default_writer().enabled = False
    return comm


def world_if_launched():
    """MPI_COMM_WORLD prepared by ``init_parallel`` when this process is one of several
    ranks started by mpiexec, else None (and MPI is never initialised)."""
    from .launch import mpi_world_size
    return init_parallel() if mpi_world_size() > 1 else None


def attach_data_parallel(solver, comm=None, algorithm=None, bucket_bytes=None):
    """Make ``solver`` one replica of a data-parallel job over ``comm``; returns the callback.

    ``algorithm`` ("ring" or "mpi") and ``bucket_bytes`` default to the
    environment's PYCAFFE_MCT_ALLREDUCE and PYCAFFE_MCT_BUCKET_MB, so that
    ``mpiexec -genv PYCAFFE_MCT_ALLREDUCE mpi pycaffe_mct train ...`` selects them.
    """
    if algorithm is None:
        algorithm = os.environ.get("PYCAFFE_MCT_ALLREDUCE", "ring")
    if bucket_bytes is None:
        megabytes = os.environ.get("PYCAFFE_MCT_BUCKET_MB")
        bucket_bytes = int(float(megabytes) * (1 << 20)) if megabytes else DEFAULT_BUCKET_BYTES
    world = comm if comm is not None else get_world()
    partitioned_late = default_partition() != (world.Get_rank(), world.Get_size())
    init_parallel(world)
    solver.set_rank(world.Get_rank())
    callback = DataParallel(solver, world, algorithm, bucket_bytes)
    if partitioned_late:
        solver.log.warning("the nets were built before init_parallel(): every rank reads "
                           "the whole training set", "parallel:0")
    solver.add_callback(callback)
    return callback


class DataParallel:
    """The solver callback; see the module docstring."""

    def __init__(self, solver, comm, algorithm, bucket_bytes):
        self.comm = comm
        self.allreduce = make_allreduce(comm, algorithm)
        self.gradients = GradientSync(solver.net, self.allreduce, solver.param.iter_size,
                                      bucket_bytes)
        self._started = False
        self._agreed_action = NONE
        solver.set_action_arbiter(self._action_for_solver)

    def on_start(self, solver):
        if not self._started:
            self._check_agreement(solver)
            self._broadcast_weights(solver)
            self._started = True
            solver.info(f"Data parallel on {self.comm.Get_size()} MPI ranks: each reads 1/"
                        f"{self.comm.Get_size()} of the training data; gradients averaged "
                        f"by {self.allreduce.name} allreduce in {len(self.gradients.buckets)} "
                        f"bucket(s)", 0, "parallel")

    def on_gradients_ready(self, solver):
        self.gradients.finish()
        self._agree_on_action(solver)

    def _check_agreement(self, solver):
        p = solver.param
        mine = {"iteration": solver.iter, "random_seed": p.random_seed,
                "iter_size": p.iter_size, "max_iter": p.max_iter}
        everyone = self.comm.allgather(mine)
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                differing = [k for k in mine if theirs[k] != everyone[0][k]]
                raise CaffeError(
                    f"rank {rank} disagrees with rank 0 on {', '.join(differing)}: "
                    f"{theirs} vs {everyone[0]}; start every rank from the same solver file "
                    f"and snapshot")

    def _broadcast_weights(self, solver):
        for blob in solver.net.learnable_params:
            self.comm.Bcast(blob.data, root=0)

    def _agree_on_action(self, solver):
        local = solver.local_action_request()
        agreed = _ACTION_ORDER[self.comm.allreduce(_ACTION_ORDER.index(local), op=mpi_module().MAX)]
        if agreed == SNAPSHOT and not solver.is_root:
            agreed = NONE
        self._agreed_action = agreed

    def _action_for_solver(self):
        """What the solver polls after each update: the action all ranks agreed on."""
        action, self._agreed_action = self._agreed_action, NONE
        return action
