"""Python layers: ``type: "Python"`` runs a user's own layer class, as pycaffe does.

``python_param { module: "m" layer: "C" param_str: "..." }`` imports module
``m`` from ``sys.path`` and instantiates ``m.C(layer_param)``, a subclass of
``caffe.Layer`` (``PythonLayerBase`` here) implementing ``setup``, ``reshape``,
``forward`` and ``backward`` on lists of blobs.

A prototxt naming a module is code execution, so the type is off until the user
turns it on: ``PYCAFFE_MCT_PYTHON_LAYERS=1`` in the environment,
``caffe.set_python_layers(True)`` or ``--python-layers`` on the commands.  The
switch lives in the environment variable so that every process started from
this one (MPI ranks, prefetch workers) sees the same answer.
"""
import importlib
import os

from ..blob import Blob
from ..layer import Layer, register_layer

ENV_VAR = "PYCAFFE_MCT_PYTHON_LAYERS"
HOW_TO_TURN_ON = (f"{ENV_VAR}=1 in the environment, caffe.set_python_layers(True), "
                  f"or --python-layers on the command line")


def set_python_layers(enabled):
    """Turn Python layers on or off for this process and the processes it starts."""
    os.environ[ENV_VAR] = "1" if enabled else "0"


def python_layers_enabled():
    """Whether ``type: "Python"`` layers may be created."""
    return os.environ.get(ENV_VAR, "0").strip().lower() not in ("", "0", "false", "no", "off")


class LayerBlobs(list):
    """A Python layer's parameter blobs: pycaffe's BlobVec, with ``add_blob(*shape)``."""

    def add_blob(self, *shape):
        self.append(Blob(shape))


class PythonLayerBase:
    """pycaffe's ``caffe.Layer``: subclass it and implement ``setup``, ``reshape``,
    ``forward`` and ``backward``; ``self.blobs``, ``self.param_str`` and
    ``self.phase`` are set for you before ``setup`` is called."""

    type = "Python"

    def __init__(self, param):
        self.blobs = LayerBlobs()
        self.param_str = param.python_param.param_str
        self.phase = param.phase

    def setup(self, bottom, top):
        """Read ``self.param_str``, check the bottoms, add parameter blobs; optional."""

    def reshape(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__} must implement reshape(bottom, top)")

    def forward(self, bottom, top):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(bottom, top)")

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError(
            f"{type(self).__name__} must implement backward(top, propagate_down, bottom)")


@register_layer("Python")
class PythonLayer(Layer):
    """The net's side of a Python layer: runs the contract's fixed sequence around
    the user's object (``self.python_layer``), whose attributes it also answers."""

    passes_errors_through = True

    @classmethod
    def unavailable_reason(cls):
        if python_layers_enabled():
            return None
        return ("Python layers are off because a prototxt naming a Python module would run "
                f"that module's code; if you trust this net, turn them on with {HOW_TO_TURN_ON}")

    def __init__(self, param):
        super().__init__(param)
        self.python_layer = _instantiate(self, param.python_param)
        self.blobs = self.python_layer.blobs

    def __getattr__(self, name):
        # Only reached for names the adapter lacks: pycaffe's net.layers[i] is the user's object.
        if name == "python_layer":
            raise AttributeError(name)
        return getattr(self.python_layer, name)

    def layer_setup(self, bottom, top):
        user = self.python_layer
        user.param_str = self.param.python_param.param_str
        user.phase = self.phase
        self._call("setup", bottom, top)
        self.blobs = user.blobs

    def reshape(self, bottom, top):
        self._call("reshape", bottom, top)

    def forward_cpu(self, bottom, top):
        self._call("forward", bottom, top)

    def backward_cpu(self, top, propagate_down, bottom):
        self._call("backward", top, propagate_down, bottom)

    def _call(self, method, *args):
        """Run one of the user's methods; its exception keeps its type, with a note
        naming the layer."""
        try:
            getattr(self.python_layer, method)(*args)
        except Exception as exc:
            if hasattr(exc, "add_note"):   # Python 3.11+
                exc.add_note(f"in {method}() of layer '{self.name}' (type Python, "
                             f"{self.param.python_param.module}."
                             f"{self.param.python_param.layer})")
            raise


def _instantiate(layer, python_param):
    """Import ``python_param.module`` from sys.path and create its ``layer`` class."""
    if not python_param.module or not python_param.layer:
        raise layer.error("python_param needs both module and layer")
    try:
        module = importlib.import_module(python_param.module)
    except ImportError as exc:
        raise layer.error(f"cannot import Python module '{python_param.module}' ({exc}); "
                          f"its directory must be on sys.path (PYTHONPATH)") from exc
    cls = getattr(module, python_param.layer, None)
    if not (isinstance(cls, type) and issubclass(cls, PythonLayerBase)):
        raise layer.error(f"{python_param.module}.{python_param.layer} is not a caffe.Layer "
                          f"subclass")
    instance = cls(layer.param)
    if not hasattr(instance, "blobs"):       # an __init__ of the user's that skipped super()
        instance.blobs = LayerBlobs()
    return instance
