"""``compiling kernels (first run only)``: said when numba compiles, never on a warm cache."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pycaffe_mct.kernel_cache import MESSAGE

REPO = Path(__file__).resolve().parents[1]
# One InnerProduct and a Euclidean loss: the fewest kernels a training iteration compiles.
NET = """
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 }
    data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 0 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""


def train_log(solver, cache):
    """The stderr of ``pycaffe_mct train`` in a new process with numba's cache in ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "pycaffe_mct.cli", "train", "--solver",
                           str(solver)], env=env, capture_output=True, text=True, check=True)
    return done.stderr


@pytest.mark.slow
def test_said_once_before_the_first_iteration_on_a_cold_cache_only(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1 lr_policy: "fixed" '
                      f'max_iter: 1 display: 1 snapshot_after_train: false\n')
    cold = train_log(solver, tmp_path / "cache")
    assert cold.count(MESSAGE) == 1
    assert cold.index(MESSAGE) < cold.index("] Iteration 0 ")
    assert MESSAGE not in train_log(solver, tmp_path / "cache")


# LeNet's training step and its test pass (with Accuracy) in a new process; prints each core
# group kernel the process holds (compiled or loaded from numba's cache) with its count of
# signatures.
SIGNATURES_PROBE = """
import sys
from numba.core.dispatcher import Dispatcher
from pycaffe_mct.commands.timing import build_timing_net
from pycaffe_mct.layer import TEST, TRAIN

build_timing_net(sys.argv[1], TRAIN, batch=64, data_shape=(1, 28, 28)).forward_backward()
build_timing_net(sys.argv[1], TEST, batch=100, data_shape=(1, 28, 28)).forward()
for name, module in list(sys.modules.items()):
    if name.startswith("pycaffe_mct.cg.ops"):
        for kernel, value in vars(module).items():
            if isinstance(value, Dispatcher) and value.overloads:
                print(kernel, len(value.overloads))
"""


@pytest.mark.slow
def test_lenet_compiles_each_kernel_for_one_signature_only():
    """Every signature is a compilation of its own on a cold start: the ops hand a kernel
    the same types (dtypes, layouts, writable arrays) on every call."""
    done = subprocess.run([sys.executable, "-c", SIGNATURES_PROBE,
                           str(REPO / "models/lenet/lenet_train_test.prototxt")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    held = dict(line.split() for line in done.stdout.splitlines())
    assert {"im2col_kernel", "max_pool_forward_kernel", "row_shift_kernel",
            "accuracy_counts_kernel"} <= set(held)
    assert {kernel: count for kernel, count in held.items() if count != "1"} == {}
