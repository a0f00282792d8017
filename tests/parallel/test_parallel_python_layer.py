"""A Python layer under ``mpiexec -n 2 pycaffe_mct train``: every rank imports the user's
module (the switch reaches the ranks through the environment) and its learned
parameter follows a one-process run."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mpi_jobs import REPO, clean_environment, needs_mpi, run_mpi
from training_case import read_weights

pytestmark = [pytest.mark.slow, pytest.mark.mpi, needs_mpi]

USER_MODULE = '''
import os
import pycaffe_mct as caffe


class Square(caffe.Layer):
    """y = s * x**2 with a learned s; leaves a file naming the rank that set it up."""

    def setup(self, bottom, top):
        rank = os.environ.get("PMI_RANK", "alone")
        open(os.path.join(self.param_str, "rank_" + rank), "w").close()
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = 1

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data ** 2

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += (top[0].diff * bottom[0].data ** 2).sum()
'''

NET = """
layer {{ name: "data" type: "DummyData" top: "x" top: "t"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 3 }}
    data_filler {{ type: "constant" value: 0.5 }} data_filler {{ type: "constant" value: 1 }} }} }}
layer {{ name: "square" type: "Python" bottom: "x" top: "y"
  python_param {{ module: "mpi_square_layer" layer: "Square" param_str: "{markers}" }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }}
"""


def write_job(directory, name):
    markers = directory / f"{name}_markers"
    markers.mkdir()
    (directory / f"{name}_net.prototxt").write_text(NET.format(markers=markers))
    solver = directory / f"{name}_solver.prototxt"
    solver.write_text(f'net: "{directory / name}_net.prototxt"\nbase_lr: 0.5\n'
                      f'lr_policy: "fixed"\nmax_iter: 3\ndisplay: 0\nrandom_seed: 1\n'
                      f'snapshot_prefix: "{directory / name}"\n')
    return solver, markers


def test_python_layer_trains_on_two_ranks_like_one_process(tmp_path):
    (tmp_path / "mpi_square_layer.py").write_text(USER_MODULE)
    pythonpath = os.pathsep.join([str(tmp_path), str(REPO)])
    solver, markers = write_job(tmp_path, "one")
    subprocess.run([sys.executable, "-m", "pycaffe_mct.cli", "train", "--python-layers",
                    "--solver", str(solver)], check=True, timeout=120, capture_output=True,
                   env={**clean_environment(), "PYTHONPATH": pythonpath})
    reference = read_weights(tmp_path / "one_iter_3.caffemodel")["square"][0]
    assert reference[0] != 1                            # it learned
    solver, markers = write_job(tmp_path, "two")
    code, out, err, _ = run_mpi(2, "pycaffe_mct.cli", "train", "--solver", solver, script="-m",
                                env={"PYTHONPATH": pythonpath, "PYCAFFE_MCT_PYTHON_LAYERS": "1"})
    assert code == 0, f"exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert sorted(p.name for p in markers.iterdir()) == ["rank_0", "rank_1"]
    np.testing.assert_allclose(read_weights(tmp_path / "two_iter_3.caffemodel")["square"][0],
                               reference, rtol=1e-6)
