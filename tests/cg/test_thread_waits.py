"""How numba's OpenMP threads wait between parallel regions: a short spin for a process
alone on its node, sleeping at once for ranks that share it, a user's choice kept."""
import os
import subprocess
import sys

import pytest

from mpi_launcher import mpiexec, needs_mpi
from pycaffe_mct.cg import LOCAL_RANK_COUNTS

SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SHOW = ("import os, pycaffe_mct\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")


def _clean_environment(**env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in SETTINGS + LOCAL_RANK_COUNTS}
    environment.update(env)
    return environment


def _settings_seen(**env):
    """(OMP_WAIT_POLICY, GOMP_SPINCOUNT) after importing pycaffe_mct in a new process."""
    out = subprocess.run([sys.executable, "-c", SHOW], env=_clean_environment(**env),
                         capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def test_a_process_alone_spins_briefly():
    assert _settings_seen() == ("None", "10000")


@pytest.mark.parametrize("launcher_variable", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"])
def test_ranks_sharing_a_node_sleep_at_once(launcher_variable):
    assert _settings_seen(**{launcher_variable: "2"}) == ("PASSIVE", "None")


def test_one_rank_on_its_node_spins():
    assert _settings_seen(MPI_LOCALNRANKS="1") == ("None", "10000")


@pytest.mark.parametrize("env,expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "None")),
    ({"GOMP_SPINCOUNT": "500"}, ("None", "500")),
    ({"OMP_WAIT_POLICY": "PASSIVE", "MPI_LOCALNRANKS": "1"}, ("PASSIVE", "None")),
])
def test_a_users_choice_is_kept(env, expected):
    assert _settings_seen(**env) == expected


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
def test_ranks_started_by_mpiexec_on_one_node_sleep_at_once():
    done = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-c", SHOW],
                          env=_clean_environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PASSIVE", "None"] * 2
