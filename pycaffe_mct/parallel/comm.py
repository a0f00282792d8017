"""The MPI communicator, created on first use.

mpi4py initialises MPI when it is imported, so only the functions here (and
the modules of this package that call them) import it, and only when a
parallel run asks for a communicator: the library keeps working without
mpi4py, and a single-process run never initialises MPI.
"""
from ..errors import MissingDependencyError, missing_dependency


class MPIUnavailableError(MissingDependencyError):
    """mpi4py (or an MPI library under it) is missing."""


def mpi_module():
    """``mpi4py.MPI``, importing it (and so initialising MPI) on first call."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise missing_dependency("MPI parallelism", "mpi", exc, MPIUnavailableError) from exc
    return MPI


def get_world():
    """MPI_COMM_WORLD, with the abort-on-error hook installed (see faults)."""
    from .faults import install_abort_on_error
    world = mpi_module().COMM_WORLD
    install_abort_on_error(world)
    return world
