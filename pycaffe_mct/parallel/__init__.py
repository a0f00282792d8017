"""MPI parallelism: data-parallel solvers, ring allreduce, model groups for MCT.

Importing this package does not import mpi4py; the communicator is created
(and MPI initialised) only when a parallel run asks for it, so single-process
training works without mpi4py installed.
"""
from .data_parallel import attach_data_parallel, init_parallel, world_if_launched
from .groups import ModelGroups, allgather_rows, broadcast_state, group_sizes
from .launch import launched_by_mpi, mpi_rank, mpi_world_size

__all__ = ["ModelGroups", "allgather_rows", "attach_data_parallel", "broadcast_state",
           "group_sizes",
           "init_parallel", "launched_by_mpi", "mpi_rank", "mpi_world_size",
           "world_if_launched"]
