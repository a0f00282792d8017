"""Data parallelism end to end, through ``mpiexec -n N pycaffe_mct train``.

N ranks with batch b must follow the weights of one process with batch N*b
(the Data layer's partition gives the ranks exactly that batch between them),
a resume may use another N, and only rank 0 logs and snapshots.
"""
import subprocess
import sys
import time

import numpy as np
import pytest

from mpi_jobs import REPO, clean_environment, finish_mpi, needs_mpi, run_mpi, start_mpmd
from training_case import read_weights, write_job

pytestmark = [pytest.mark.slow, pytest.mark.mpi, needs_mpi]

TRAIN = ("-m", "pycaffe_mct.cli", "train", "--solver")


def train(ranks, solver, *flags, env=None):
    """Run the train command on ``ranks`` ranks; returns its log (stderr)."""
    code, out, err, _ = run_mpi(ranks, *TRAIN[1:], solver, *flags, script=TRAIN[0], env=env)
    assert code == 0, f"exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    return err


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process, no mpiexec, batch 16: the reference trajectory."""
    directory = tmp_path_factory.mktemp("data_parallel")
    solver = write_job(directory, "one", batch=16, max_iter=5)
    subprocess.run([sys.executable, *TRAIN, str(solver)], check=True, cwd=REPO, timeout=120,
                   env=clean_environment(), capture_output=True)
    return directory, read_weights(directory / "one_iter_5.caffemodel")


def assert_same_weights(mine, reference):
    assert mine.keys() == reference.keys()
    for name in reference:
        for got, expected in zip(mine[name], reference[name]):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6, err_msg=name)


def test_four_ranks_follow_one_process_with_four_times_the_batch(single_process):
    directory, reference = single_process
    log = train(4, write_job(directory, "four", batch=4, max_iter=5))
    assert_same_weights(read_weights(directory / "four_iter_5.caffemodel"), reference)
    assert log.count("Data parallel on 4 MPI ranks") == 1
    assert log.count("Iteration 2 (") == 1                      # rank 0 alone logs
    assert log.count("Snapshotting to binary proto file") == 1


def test_two_ranks_with_iter_size_and_mpi_allreduce_follow_one_process(single_process):
    directory, reference = single_process
    log = train(2, write_job(directory, "two_accumulating", batch=4, max_iter=5, iter_size=2),
                env={"PYCAFFE_MCT_ALLREDUCE": "mpi"})
    assert "averaged by mpi allreduce" in log
    assert_same_weights(read_weights(directory / "two_accumulating_iter_5.caffemodel"),
                        reference)


def test_resume_on_a_different_number_of_ranks(single_process):
    directory, reference = single_process
    train(4, write_job(directory, "first_half", batch=4, max_iter=3, snapshot=3))
    resumed = write_job(directory, "second_half", batch=8, max_iter=5)
    log = train(2, resumed, "--snapshot", directory / "first_half_iter_3.solverstate")
    assert "Data parallel on 2 MPI ranks" in log
    assert_same_weights(read_weights(directory / "second_half_iter_5.caffemodel"), reference)


def test_ranks_started_differently_are_refused_naming_the_rank(tmp_path):
    solver = write_job(tmp_path, "mismatch", batch=4, max_iter=5)
    job = start_mpmd([(1, "-m", *TRAIN[1:], solver, "--iterations", 5),
                      (1, "-m", *TRAIN[1:], solver, "--iterations", 6)])
    code, _, err, _ = finish_mpi(job, time.monotonic(), timeout=90)
    assert code != 0
    assert "rank 1 disagrees with rank 0 on max_iter" in err
