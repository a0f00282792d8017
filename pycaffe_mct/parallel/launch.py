"""Is this process one rank of an MPI job?  Answered from the environment only.

MPI launchers tell their processes who they are through environment variables,
so the single-process code paths (``pycaffe_mct train`` without ``mpiexec``)
can decide whether to go parallel without importing mpi4py, which would
initialise MPI, and without requiring it to be installed at all.
"""
import os

# (world size, rank) variable pairs, most specific launcher first.
_LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),    # Open MPI's mpirun / prterun
    ("PMI_SIZE", "PMI_RANK"),                            # MPICH Hydra, Intel MPI, srun --mpi=pmi2
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),      # MVAPICH
    ("PMIX_SIZE", "PMIX_RANK"),                          # some PMIx launchers
)
# srun --mpi=pmix names the rank (PMIX_RANK) but leaves the size to Slurm.
_SLURM_STEP_SIZE = "SLURM_STEP_NUM_TASKS"
# Ranks on this node (MPICH, Hydra): a lower bound on the world size.
_LOCAL_SIZE = "MPI_LOCALNRANKS"


def _first_int(names, environ):
    """The value of the first of ``names`` set to a number in ``environ``, else None."""
    for name in names:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def mpi_world_size(environ=None):
    """The number of ranks the launcher started, 1 outside any MPI launcher."""
    environ = os.environ if environ is None else environ
    size = _first_int([size for size, _ in _LAUNCHER_VARIABLES], environ)
    if size is None and "PMIX_RANK" in environ:
        size = _first_int([_SLURM_STEP_SIZE], environ)
    return size or _first_int([_LOCAL_SIZE], environ) or 1


def mpi_rank(environ=None):
    """This process's rank in the launcher's world, 0 outside any MPI launcher."""
    environ = os.environ if environ is None else environ
    return _first_int([rank for _, rank in _LAUNCHER_VARIABLES], environ) or 0


def launched_by_mpi(environ=None):
    """True when started by ``mpiexec -n N`` with N > 1."""
    return mpi_world_size(environ) > 1
