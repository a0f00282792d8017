"""Start a small MPI job on localhost from a test, with a hard time limit."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).with_name("mpi_workers.py")

MPI_AVAILABLE = bool(shutil.which("mpiexec")) and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not MPI_AVAILABLE, reason="mpiexec or mpi4py not installed")


def _clean_environment():
    """Our environment without PYTHONPATH surprises or a launcher's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_mpi(ranks, *args, timeout=90, script=WORKERS, cwd=None):
    """``mpiexec -n ranks python script args``; the whole process group dies at ``timeout``.

    Returns (exit code, stdout, stderr, seconds taken).
    """
    command = ["mpiexec", "-n", str(ranks), sys.executable, str(script), *map(str, args)]
    begin = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_clean_environment(), cwd=cwd,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"MPI job {' '.join(command)} still running after {timeout} s\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    return process.returncode, out, err, time.monotonic() - begin


def run_mpi_ok(ranks, *args, **kwargs):
    """``run_mpi`` that fails the test on a non-zero exit; returns stdout."""
    code, out, err, _ = run_mpi(ranks, *args, **kwargs)
    assert code == 0, f"exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out
