"""MPI detection from the launcher's environment, and mpi4py staying unimported."""
import subprocess
import sys

import pytest

from mpi_jobs import REPO
from pycaffe_mct.parallel.launch import launched_by_mpi, mpi_rank, mpi_world_size


@pytest.mark.parametrize("environ, size, rank", [
    ({}, 1, 0),
    ({"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALNRANKS": "2"}, 4, 3),     # MPICH Hydra
    ({"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5"}, 8, 5),     # Open MPI
    ({"MV2_COMM_WORLD_SIZE": "2", "MV2_COMM_WORLD_RANK": "1"}, 2, 1),       # MVAPICH
    ({"PMIX_RANK": "2", "SLURM_STEP_NUM_TASKS": "6"}, 6, 2),                # srun --mpi=pmix
    ({"MPI_LOCALNRANKS": "3"}, 3, 0),
    ({"PMI_SIZE": "garbage"}, 1, 0),
])
def test_world_size_and_rank_come_from_the_launcher_environment(environ, size, rank):
    assert mpi_world_size(environ) == size
    assert mpi_rank(environ) == rank
    assert launched_by_mpi(environ) == (size > 1)


def test_library_solvers_and_parallel_import_without_mpi4py():
    code = ("import sys, pycaffe_mct, pycaffe_mct.solvers, pycaffe_mct.parallel, "
            "pycaffe_mct.cli; assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_missing_mpi4py_is_reported_with_the_install_command():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from pycaffe_mct.parallel.comm import get_world, MPIUnavailableError\n"
            "try:\n    get_world()\nexcept MPIUnavailableError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120,
                         capture_output=True, text=True).stdout
    assert "MPI parallelism needs mpi4py" in out and "pip install -e '.[mpi]'" in out
