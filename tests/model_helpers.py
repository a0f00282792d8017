"""Access to tools/make_prototxt.py (the NetSpec generator of models/) from tests."""
import importlib.util
from pathlib import Path

from pycaffe_mct.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
TOOLS = REPO / "tools"


def load_tool(name):
    """The script tools/<name>.py as a module (tools/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_tool("make_prototxt")


def with_inputs_for_data(net_param, batch):
    """Replace each Data layer by an Input layer giving data (batch, 3, crop, crop) and labels."""
    for layer in net_param.layer:
        if layer.type != "Data":
            continue
        side = layer.transform_param.crop_size or 32
        layer.type = "Input"
        layer.ClearField("data_param")
        layer.ClearField("transform_param")
        layer.input_param.shape.add(dim=[batch, 3, side, side])
        layer.input_param.shape.add(dim=[batch])
    return net_param


def forced_backward(net_param):
    """A copy that back-propagates everywhere (deploy nets have no loss)."""
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(net_param)
    copy.force_backward = True
    return copy
