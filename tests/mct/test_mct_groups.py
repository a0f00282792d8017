"""MCT on N MPI ranks, grouped (the paper's layout) and replicated, against one process:
the same masks at every calibration iteration, the same weights to float32 rounding."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest

from parallel.mpi_jobs import (clean_environment, finish_mpi, needs_mpi, rank_pid, run_mpi_ok,
                               start_mpi)
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto
from test_mct_trainer import digits, write_job  # noqa: F401  (digits is a fixture)

WORKER = Path(__file__).with_name("mct_worker.py")
# 12:4 images per pretraining iteration puts 4 ranks at 3+1, then 2+2 for calibration,
# so rank 2 takes M_a's state over at the phase change.  The run stays in the first
# epoch of both data sets, where the ranks' shares are exactly the one process's batches.
JOB = dict(noisy_batch=12, clean_batch=4, pretrain_iter=3, max_iter=8, test_interval=100,
           test_initialization="false", snapshot=2)
ITERATIONS = 8
# Largest differences measured from one process (gradients summed in another order):
# 0 (2 ranks grouped), 2.2e-8 (3), 3.0e-8 (4); 1.2e-7 replicated on 2 and 4 ranks:
# one float32 rounding step of the largest weights.
WEIGHT_TOLERANCE = 2e-7


def _run(tmp_path, data, ranks, layout, resume_from=None, iteration=None):
    """One run (resumed from the ``iteration`` snapshots in ``resume_from``, a snap dir)."""
    job = tmp_path / f"{layout}{ranks}"
    job.mkdir()
    solver = write_job(job, data, **JOB)
    out = job / "masks.npz"
    args = [solver, layout, out]
    if resume_from is not None:
        (job / "snap").mkdir()
        for model in ("aux", "primary"):
            for kind in (".caffemodel", ".solverstate"):
                name = f"{model}_iter_{iteration}{kind}"
                shutil.copy(resume_from / name, job / "snap" / name)
        args.append(job / "snap" / f"primary_iter_{iteration}.solverstate")
    if ranks == 1:
        done = subprocess.run([sys.executable, str(WORKER), *map(str, args)],
                              capture_output=True, text=True, timeout=300,
                              env=clean_environment(), cwd=job)
        assert done.returncode == 0, done.stderr[-3000:]
        log = done.stderr
    else:
        log = run_mpi_ok(ranks, *args, script=WORKER, cwd=job, timeout=300)
    masks = np.load(out)
    return masks["mask_a"], masks["mask_p"], job / "snap", log


def _weights(path):
    net = read_binary_proto(path, caffe_pb2.NetParameter())
    return {layer.name: [np.array(b.data, np.float32) for b in layer.blobs]
            for layer in net.layer}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, digits):  # noqa: F811
    return _run(tmp_path_factory.mktemp("one"), digits, 1, "grouped")


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("ranks, layout", [(2, "grouped"), (3, "grouped"), (4, "grouped"),
                                           (2, "replicated"), (4, "replicated")])
def test_n_ranks_select_and_learn_as_one_process(tmp_path, digits, one_process,  # noqa: F811
                                                 ranks, layout):
    _check_same_run(_run(tmp_path, digits, ranks, layout), one_process)


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
def test_one_process_snapshot_resumes_on_four_ranks_through_the_phase_change(
        tmp_path, digits, one_process):  # noqa: F811
    # From iteration 2 (pretraining, 3+1) through the re-division at 3 (2+2).
    resumed = _run(tmp_path, digits, 4, "grouped", one_process[2], iteration=2)
    _check_same_run(resumed, one_process)


def _check_same_run(run, reference):
    """The same masks (the last ones, for a resumed run) and final weights."""
    mask_a, mask_p, snap, _ = run
    want_a, want_p, want_snap, _ = reference
    assert want_p.shape == (ITERATIONS - JOB["pretrain_iter"], JOB["noisy_batch"])
    np.testing.assert_array_equal(mask_a, want_a[len(want_a) - len(mask_a):])
    np.testing.assert_array_equal(mask_p, want_p[len(want_p) - len(mask_p):])
    for model in ("aux", "primary"):
        mine = _weights(snap / f"{model}_iter_{ITERATIONS}.caffemodel")
        for name, blobs in _weights(want_snap / f"{model}_iter_{ITERATIONS}.caffemodel").items():
            for got, want in zip(mine[name], blobs):
                np.testing.assert_allclose(got, want, rtol=0, atol=WEIGHT_TOLERANCE,
                                           err_msg=f"{model} {name}")


TEARDOWN_SECONDS = 30      # generous: ranks share 2 cores with the rest of the suite
MCT_TRAIN = ("import sys; from pycaffe_mct.cli import mct_train_main; "
             "sys.exit(mct_train_main(sys.argv[1:]))")


def _start_mct(job, ranks, **settings):
    """``mpiexec -n ranks mct_train`` on a tiny job (8:4 images: M_p on 0-1, M_a on 2)."""
    solver = write_job(job, settings.pop("data"), **settings)
    script = job / "mct_train.py"
    script.write_text(MCT_TRAIN)
    return start_mpi(ranks, "--solver", solver, script=script, cwd=job)


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
def test_killed_aux_rank_ends_the_grouped_job_within_seconds(tmp_path, digits):  # noqa: F811
    job = _start_mct(tmp_path, 3, data=digits, max_iter=100000, snapshot=2, display=0,
                     test_interval=100000)
    deadline = time.monotonic() + 90
    while not (tmp_path / "snap" / "aux_iter_4.solverstate").exists():
        assert job.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    os.kill(rank_pid(job, 2), signal.SIGKILL)
    code, _, err, seconds = finish_mpi(job, time.monotonic(), timeout=120)
    assert code != 0 and seconds < TEARDOWN_SECONDS, (code, seconds, err[-2000:])
    assert "M_p on ranks 0-1, M_a on rank 2" in err        # which group rank 2 was in


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
def test_failing_aux_rank_names_its_rank_and_group(tmp_path, digits):  # noqa: F811
    empty = tmp_path / "empty_lmdb"
    lmdb.open(str(empty)).close()
    job = _start_mct(tmp_path, 3, data=digits, clean_source=str(empty))
    code, out, err, seconds = finish_mpi(job, time.monotonic(), timeout=120)
    assert code != 0 and seconds < TEARDOWN_SECONDS, (code, seconds, err[-2000:])
    assert "rank 2 of 3 (M_a's group, rank 0 of 1): command failed" in out + err
    assert re.search(r"error: .*mct_param.clean_data: .*empty_lmdb' holds no records",
                     out + err), err[-2000:]
