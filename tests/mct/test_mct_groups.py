"""MCT on N MPI ranks, grouped (the paper's layout) and replicated, against one process:
the same masks at every calibration iteration, the same weights to float32 rounding."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parallel.mpi_jobs import clean_environment, needs_mpi, run_mpi_ok
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto
from test_mct_trainer import digits, write_job  # noqa: F401  (digits is a fixture)

WORKER = Path(__file__).with_name("mct_worker.py")
# 12:4 images per pretraining iteration puts 4 ranks at 3+1, then 2+2 for calibration,
# so rank 2 takes M_a's state over at the phase change.  The run stays in the first
# epoch of both data sets, where the ranks' shares are exactly the one process's batches.
JOB = dict(noisy_batch=12, clean_batch=4, pretrain_iter=3, max_iter=8, test_interval=100,
           test_initialization="false", snapshot=0)
ITERATIONS = 8
# Largest differences measured from one process (gradients summed in another order):
# 0 (2 ranks grouped), 2.2e-8 (3), 3.0e-8 (4); 1.2e-7 replicated on 2 and 4 ranks:
# one float32 rounding step of the largest weights.
WEIGHT_TOLERANCE = 2e-7


def _run(tmp_path, data, ranks, layout):
    job = tmp_path / f"{layout}{ranks}"
    job.mkdir()
    solver = write_job(job, data, **JOB)
    out = job / "masks.npz"
    if ranks == 1:
        done = subprocess.run([sys.executable, str(WORKER), str(solver), layout, str(out)],
                              capture_output=True, text=True, timeout=300,
                              env=clean_environment(), cwd=job)
        assert done.returncode == 0, done.stderr[-3000:]
        log = done.stderr
    else:
        log = run_mpi_ok(ranks, solver, layout, out, script=WORKER, cwd=job, timeout=300)
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
    mask_a, mask_p, snap, _ = _run(tmp_path, digits, ranks, layout)
    want_a, want_p, want_snap, _ = one_process
    assert mask_p.shape == (ITERATIONS - JOB["pretrain_iter"], JOB["noisy_batch"])
    np.testing.assert_array_equal(mask_a, want_a)
    np.testing.assert_array_equal(mask_p, want_p)
    for model in ("aux", "primary"):
        mine = _weights(snap / f"{model}_iter_{ITERATIONS}.caffemodel")
        for name, blobs in _weights(want_snap / f"{model}_iter_{ITERATIONS}.caffemodel").items():
            for got, want in zip(mine[name], blobs):
                np.testing.assert_allclose(got, want, rtol=0, atol=WEIGHT_TOLERANCE,
                                           err_msg=f"{model} {name}")
