"""Export a trained net for serving outside pycaffe_mct: ONNX, checked by ONNX Runtime.

This package imports without the ``onnx`` package: the exporter (``export.onnx``)
is loaded only when a model is written, and a missing ``[onnx]`` extra is a
CaffeError that says how to install it.  So ``Net.to_onnx``, the
``pycaffe_mct export`` command and the MCT trainer's deploy all go through
``export_onnx`` here, and the trainer can write an ONNX twin of its deployed
model when the extra is installed and say so when it is not.
"""
import importlib.util
import os

from ..errors import CaffeError, install_command
from ..layer import TEST

INSTALL_HINT = install_command("onnx")


def onnx_available():
    """Whether the ``onnx`` package (the ``[onnx]`` extra) is installed."""
    return importlib.util.find_spec("onnx") is not None


def export_onnx(net, path, opset=17, dynamic_batch=False):
    """Write ``net`` (a TEST-phase Net) and its weights as an ONNX model at ``path``,
    atomically; returns the ModelProto.  See ``export.onnx`` for the layer mapping."""
    if not onnx_available():
        raise CaffeError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}")
    from .onnx import write_model
    return write_model(net, path, opset=opset, dynamic_batch=dynamic_batch)


def export_deploy_if_available(prototxt, caffemodel, onnx_path=None, log=print):
    """Write the ONNX twin of a deployed net (beside the .caffemodel unless ``onnx_path``)
    when onnx is installed, and log one line saying what happened.

    A net that cannot be exported is logged, not raised: the Caffe deploy files are
    already written and remain the primary result.  Returns the path written or None.
    """
    onnx_path = onnx_path or os.path.splitext(os.fspath(caffemodel))[0] + ".onnx"
    if not onnx_available():
        log(f"ONNX export skipped: onnx is not installed ({INSTALL_HINT})")
        return None
    from ..net import Net
    try:
        export_onnx(Net(prototxt, caffemodel, TEST), onnx_path)
    except CaffeError as exc:
        log(f"ONNX export skipped: {exc}")
        return None
    log(f"Wrote ONNX model {onnx_path}")
    return onnx_path
