"""Small nets and solver files for the solver tests, written into a test's tmp dir."""
import io

from pycaffe_mct.solvers import get_solver
from pycaffe_mct.solvers.log import GlogWriter

# Random inputs drawn at every forward, a constant label, a Dropout: a net whose
# training depends on the random generator at every iteration.
TINY_NET = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 5 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.3 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.3 } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

# The same shapes with a constant input: every forward gives the same gradients.
CONSTANT_NET = TINY_NET.replace('data_filler { type: "gaussian" std: 1 }',
                                'data_filler { type: "constant" value: 0.5 }').replace(
    'layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" '
    'dropout_param { dropout_ratio: 0.3 } }', "")

BASE_FIELDS = {"base_lr": 0.1, "lr_policy": '"fixed"', "max_iter": 10, "display": 0,
               "random_seed": 5}


def solver_text(fields):
    lines = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key}: {item}")
    return "\n".join(lines) + "\n"


def write_solver(tmp_path, net_text=TINY_NET, name="solver.prototxt", **fields):
    """Write net.prototxt and a solver file in ``tmp_path``; returns the solver path."""
    net_path = tmp_path / "net.prototxt"
    net_path.write_text(net_text)
    merged = dict(BASE_FIELDS, net=f'"{net_path}"', snapshot_prefix=f'"{tmp_path / "snap"}"')
    merged.update(fields)
    merged = {k: v for k, v in merged.items() if v is not None}
    path = tmp_path / name
    path.write_text(solver_text(merged))
    return path


def quiet_solver(path):
    """A solver from ``path`` whose log goes to a string; returns (solver, buffer)."""
    buffer = io.StringIO()
    return get_solver(str(path), log=GlogWriter(stream=buffer)), buffer


def weights_of(net):
    return [blob.data.copy() for blob in net.learnable_params]
