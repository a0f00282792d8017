"""Start a small MPI job on localhost from a test, with a hard time limit."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpi_launcher import mpiexec, needs_mpi  # noqa: F401 (needs_mpi: for the tests)

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).with_name("mpi_workers.py")


def clean_environment():
    """Our environment without PYTHONPATH surprises or a launcher's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_mpi(ranks, *args, script=WORKERS, cwd=None, env=None):
    """Start ``mpiexec -n ranks python script args`` in a process group of its own."""
    return start_mpmd([(ranks, script, *args)], cwd=cwd, env=env)


def start_mpmd(programs, cwd=None, env=None):
    """``mpiexec -n n1 python a1... : -n n2 python a2...`` for (n, script, *args) programs."""
    command = [mpiexec()]
    for ranks, script, *args in programs:
        command += [":"] if len(command) > 1 else []
        command += ["-n", str(ranks), sys.executable, str(script), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**clean_environment(), **(env or {})}, cwd=cwd,
                            start_new_session=True)


def _descendants(pid):
    """Process ids below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def rank_pid(job, rank):
    """The process id of MPI rank ``rank`` of a job started by ``start_mpi`` (Linux)."""
    for pid in _descendants(job.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in environ:
            return pid
    raise AssertionError(f"rank {rank} of job {job.pid} not found")


def run_mpi(ranks, *args, timeout=90, script=WORKERS, cwd=None, env=None):
    """``mpiexec -n ranks python script args``; the whole process group dies at ``timeout``.

    Returns (exit code, stdout, stderr, seconds taken).
    """
    begin = time.monotonic()
    process = start_mpi(ranks, *args, script=script, cwd=cwd, env=env)
    return finish_mpi(process, begin, timeout)


def finish_mpi(process, begin, timeout):
    """Wait for a job from ``start_mpi``; (exit code, stdout, stderr, seconds since begin)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"MPI job {' '.join(process.args)} still running after {timeout} s\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    return process.returncode, out, err, time.monotonic() - begin


def run_mpi_ok(ranks, *args, **kwargs):
    """``run_mpi`` that fails the test on a non-zero exit; returns stdout."""
    code, out, err, _ = run_mpi(ranks, *args, **kwargs)
    assert code == 0, f"exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out
