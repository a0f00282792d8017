"""Reading, upgrading and checking a SolverParameter; the learning-rate policies.

Caffe finds most solver mistakes late (an unknown ``lr_policy`` only at the
first update, a bad ``stepvalue`` never).  ``read_solver_param`` and
``check_solver_param`` find them before any net is built, and name the solver
file and the line of the offending field.
"""
import math
import os
import re

import numpy as np

from ..errors import CaffeError
from ..hdf5 import h5py_missing_reason
from ..proto import caffe_pb2
from ..proto_io import read_prototxt, read_text

_P = caffe_pb2.SolverParameter

# The deprecated ``solver_type`` enum, by value, as Caffe's UpgradeSolverType maps it.
_LEGACY_TYPES = {_P.SGD: "SGD", _P.NESTEROV: "Nesterov", _P.ADAGRAD: "AdaGrad",
                 _P.RMSPROP: "RMSProp", _P.ADADELTA: "AdaDelta", _P.ADAM: "Adam"}


def field_line(source, field):
    """``source:line`` of the first ``field:`` in the file ``source``, else just ``source``."""
    try:
        text = read_text(source)
    except CaffeError:
        return source
    for number, line in enumerate(text.split("\n"), 1):
        if re.match(rf"\s*{field}\s*[:{{]", line):
            return f"{source}:{number}"
    return source


def upgrade_solver_param(param, source="solver"):
    """Turn the deprecated ``solver_type`` enum into the ``type`` string (in place)."""
    if not param.HasField("solver_type"):
        return param
    if param.HasField("type"):
        raise CaffeError(f"{field_line(source, 'solver_type')}: give the solver type either "
                         f"as 'type' (string) or as the deprecated 'solver_type' enum, "
                         f"not both")
    param.type = _LEGACY_TYPES[param.solver_type]
    param.ClearField("solver_type")
    return param


def read_solver_param(solver):
    """A checked, upgraded SolverParameter from a prototxt path or a message (copied).

    Returns ``(param, source)``; relative net paths stay relative to the working
    directory, as in Caffe.
    """
    if isinstance(solver, caffe_pb2.SolverParameter):
        param, source = _P(), "SolverParameter"
        param.CopyFrom(solver)
    else:
        source = os.fspath(solver)
        param = read_prototxt(source, _P())
    upgrade_solver_param(param, source)
    return param, source


def check_solver_param(param, source, known_types):
    """Raise a CaffeError naming ``source`` and the line for a solver that cannot run."""
    def fail(field, message):
        raise CaffeError(f"{field_line(source, field)}: {message}")

    if param.type not in known_types:
        fail("type", f"unknown solver type '{param.type}'; known types: "
                     f"{', '.join(sorted(known_types))}")
    if param.lr_policy not in LR_POLICIES:
        fail("lr_policy", f"unknown lr_policy '{param.lr_policy}'; known policies: "
                          f"{', '.join(LR_POLICIES)}")
    if param.lr_policy in ("step", "sigmoid") and param.stepsize <= 0:
        fail("stepsize", f"lr_policy '{param.lr_policy}' needs a positive stepsize")
    if param.lr_policy == "poly" and param.max_iter <= 0:
        fail("max_iter", "lr_policy 'poly' needs a positive max_iter")
    if param.gamma < 0:
        fail("gamma", f"gamma must be non-negative, got {param.gamma:g}")
    steps = list(param.stepvalue)
    for before, after in zip(steps, steps[1:]):
        if after <= before:
            fail("stepvalue", f"stepvalue must increase: {after} follows {before}")
    if param.regularization_type not in ("L1", "L2"):
        fail("regularization_type", f"unknown regularization_type "
                                    f"'{param.regularization_type}'; use L1 or L2")
    if param.snapshot_format == _P.HDF5:
        missing = h5py_missing_reason("snapshot_format HDF5")
        if missing:
            fail("snapshot_format", f"{missing}; or use BINARYPROTO, Caffe's default")
    if param.snapshot and not param.HasField("snapshot_prefix"):
        fail("snapshot", "snapshot is set but snapshot_prefix is not")
    if param.average_loss < 1:
        fail("average_loss", "average_loss must be at least 1")
    if param.iter_size < 1:
        fail("iter_size", "iter_size must be at least 1")
    _check_nets(param, source, fail)


def _check_nets(param, source, fail):
    train_fields = [f for f in ("net", "net_param", "train_net", "train_net_param")
                    if param.HasField(f)]
    if len(train_fields) != 1:
        fail("net", "give the train net with exactly one of net, net_param, train_net, "
                    f"train_net_param (found {', '.join(train_fields) or 'none'})")
    for field in ("net", "train_net"):
        if param.HasField(field) and not os.path.isfile(getattr(param, field)):
            fail(field, f"{field} file '{getattr(param, field)}' does not exist "
                        f"(relative to {os.getcwd()})")
    for path in param.test_net:
        if not os.path.isfile(path):
            fail("test_net", f"test_net file '{path}' does not exist")
    specific = len(param.test_net) + len(param.test_net_param)
    generic = param.HasField("net") or param.HasField("net_param")
    if len(param.test_iter) < specific or (not generic and len(param.test_iter) != specific):
        fail("test_iter", "give one test_iter for every test net")
    if param.test_state and len(param.test_state) != len(param.test_iter):
        fail("test_state", "give test_state once per test net, or not at all")
    if param.test_iter and param.test_interval <= 0:
        fail("test_iter", "test nets need a positive test_interval")


# ---- learning-rate policies -------------------------------------------------
# Each takes (param, iteration, current_step) and returns (rate, current_step);
# only "step" and "multistep" move current_step, which snapshots save.

def _fixed(p, it, step):
    return p.base_lr, step


def _step(p, it, step):
    step = it // p.stepsize
    return p.base_lr * math.pow(p.gamma, step), step


def _exp(p, it, step):
    return p.base_lr * math.pow(p.gamma, it), step


def _inv(p, it, step):
    # Caffe computes 1 + gamma * iter in float before the power.
    base = np.float32(1) + np.float32(p.gamma) * np.float32(it)
    return p.base_lr * math.pow(float(base), -p.power), step


def _multistep(p, it, step):
    if step < len(p.stepvalue) and it >= p.stepvalue[step]:
        step += 1
    return p.base_lr * math.pow(p.gamma, step), step


def _poly(p, it, step):
    return p.base_lr * math.pow(1.0 - float(np.float32(it) / np.float32(p.max_iter)),
                                p.power), step


def _sigmoid(p, it, step):
    return p.base_lr / (1.0 + math.exp(-p.gamma * (it - p.stepsize))), step


LR_POLICIES = {"fixed": _fixed, "step": _step, "exp": _exp, "inv": _inv,
               "multistep": _multistep, "poly": _poly, "sigmoid": _sigmoid}


def learning_rate(param, iteration, current_step=0):
    """``(rate, current_step)`` at ``iteration`` under ``param.lr_policy``, as float32."""
    rate, step = LR_POLICIES[param.lr_policy](param, iteration, current_step)
    return np.float32(rate), step
