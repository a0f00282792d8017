"""pycaffe_mct: Caffe in Python, with Mutual Calibration Training for noisy labels.

Use it as pycaffe: ``import pycaffe_mct as caffe``.
"""
from . import blas_kernel

blas_kernel.choose()        # before numpy loads OpenBLAS (see blas_kernel)

from .blob import Blob  # noqa: E402
from .errors import CaffeError, ModelFileError, NetError, PrototxtError
from .layer import TEST, TRAIN, layer_types, register_layer
from .net import Net
from .rng import set_random_seed
from . import io
from . import layers  # the layer package doubles as NetSpec's ``caffe.layers``
from .layers.python import PythonLayerBase as Layer, set_python_layers
from .net_spec import NetSpec, params, to_proto
from .solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                      RMSPropSolver, SGDSolver, get_solver)

__version__ = "0.1.0"


def layer_type_list():
    """pycaffe's list of layer types: those that can be created now ('Python' only when
    Python layers are turned on, the HDF5 layers only with h5py installed)."""
    return layer_types()


def has_nccl():
    """pycaffe's NCCL probe: False, our multi-process path is MPI (see pycaffe_mct.parallel)."""
    return False


def set_mode_cpu():
    """Everything runs on the CPU; kept for pycaffe scripts."""


def set_mode_gpu():
    """There is no GPU back end; scripts that ask for one keep running on the CPU."""
    import warnings
    warnings.warn("pycaffe_mct runs on the CPU only; set_mode_gpu() is ignored", stacklevel=2)


def set_device(device_id):
    """Accepted for pycaffe compatibility; ignored."""


__all__ = [
    "Blob", "CaffeError", "ModelFileError", "NetError", "PrototxtError", "TEST", "TRAIN",
    "Layer", "layer_types", "register_layer", "Net", "set_random_seed", "io", "NetSpec",
    "layers", "params", "to_proto", "set_mode_cpu", "set_mode_gpu", "set_device",
    "layer_type_list", "has_nccl", "set_python_layers",
    "get_solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
    "AdaDeltaSolver", "AdamSolver",
]
