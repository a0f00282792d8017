"""A failing or killed rank ends the whole job within seconds; training then resumes."""
import os
import re
import signal
import time

import pytest

from mpi_jobs import finish_mpi, needs_mpi, rank_pid, run_mpi, start_mpi
from training_case import write_job

pytestmark = [pytest.mark.slow, pytest.mark.mpi, needs_mpi]

TEARDOWN_SECONDS = 30      # generous: ranks share 2 cores with the rest of the suite


@pytest.mark.parametrize("how, messages", [
    ("exception", ["rank 1 of 3: uncaught exception", "ValueError: boom on purpose"]),
    ("command", ["error: bad solver on purpose", "rank 1 of 3: command failed"]),
    # Either a survivor notices the broken ring first, or the launcher kills it first.
    ("kill", [r"RingBroken: rank [02]: ring allreduce step|BAD TERMINATION"]),
])
def test_one_failing_rank_ends_the_job_with_its_message(how, messages):
    code, out, err, seconds = run_mpi(3, "fail", how, timeout=120)
    assert code != 0
    assert seconds < TEARDOWN_SECONDS, f"the job took {seconds:.0f} s to end"
    for message in messages:
        assert re.search(message, out + err), f"{message!r} not in:\n{out}\n{err}"


def start_training(directory, name):
    """A 3-rank training job that runs until stopped, once it has snapshotted iteration 4."""
    solver = write_job(directory, name, batch=4, max_iter=100000, snapshot=2, display=0)
    job = start_mpi(3, "pycaffe_mct.cli", "train", "--solver", solver, script="-m")
    deadline = time.monotonic() + 60
    while not (directory / f"{name}_iter_4.solverstate").exists():
        assert job.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    return job, solver


def iteration_of(path):
    return int(re.search(r"_iter_(\d+)", str(path)).group(1))


def test_killed_rank_mid_training_ends_the_job_and_the_last_snapshot_resumes(tmp_path):
    job, solver = start_training(tmp_path, "long")
    os.kill(rank_pid(job, 1), signal.SIGKILL)
    code, _, err, seconds = finish_mpi(job, time.monotonic(), timeout=120)
    assert code != 0 and seconds < TEARDOWN_SECONDS, (code, seconds, err[-2000:])

    last_state = max(tmp_path.glob("long_iter_*.solverstate"), key=iteration_of)
    last = iteration_of(last_state)
    code, _, err, _ = run_mpi(2, "pycaffe_mct.cli", "train", "--solver", solver,
                              "--snapshot", last_state, "--iterations", last + 2,
                              script="-m", timeout=120)
    assert code == 0, err[-3000:]
    assert (tmp_path / f"long_iter_{last + 2}.caffemodel").exists()


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_iteration(tmp_path):
    job, _ = start_training(tmp_path, "stopped")
    os.kill(rank_pid(job, 2), signal.SIGINT)
    code, _, err, seconds = finish_mpi(job, time.monotonic(), timeout=120)
    assert code == 0 and seconds < TEARDOWN_SECONDS, (code, seconds, err[-2000:])
    assert err.count("Optimization stopped early.") == 1
    snapshots = re.findall(r"Snapshotting to binary proto file (\S+_iter_\d+)", err)
    assert (tmp_path / f"stopped_iter_{iteration_of(snapshots[-1])}.solverstate").exists()
