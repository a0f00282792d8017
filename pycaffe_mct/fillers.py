"""Weight fillers, with Caffe's definitions of fan-in and fan-out.

``fill(blob, filler_param)`` writes into ``blob.data`` in place, drawing from
the global generator in ``rng``.  Fan-in is ``count / shape[0]`` and fan-out
``count / shape[1]`` as in Caffe's XavierFiller and MSRAFiller.
"""
import numpy as np

from . import rng
from .blob import Blob
from .errors import CaffeError
from .proto import caffe_pb2

_VARIANCE = caffe_pb2.FillerParameter


def _fan(blob, variance_norm):
    fan_in = blob.count // blob.shape[0]
    fan_out = blob.count // blob.shape[1] if blob.num_axes > 1 else blob.count
    if variance_norm == _VARIANCE.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if variance_norm == _VARIANCE.FAN_OUT:
        return fan_out
    return fan_in


def _constant(blob, p):
    blob.data[...] = p.value


def _uniform(blob, p):
    blob.data[...] = rng.generator().uniform(p.min, p.max, blob.shape)


def _gaussian(blob, p):
    values = rng.generator().normal(p.mean, p.std, blob.shape)
    if p.sparse >= 0:
        # Each output unit keeps on average `sparse` non-zero incoming weights.
        if blob.num_axes < 1:
            raise CaffeError("sparse gaussian filler needs a blob with at least one axis")
        keep = rng.generator().random(blob.shape) < p.sparse / blob.shape[0]
        values = values * keep
    blob.data[...] = values


def _positive_unitball(blob, p):
    values = rng.generator().uniform(0.0, 1.0, (blob.shape[0], blob.count // blob.shape[0]))
    values /= values.sum(axis=1, keepdims=True)
    blob.data[...] = values.reshape(blob.shape)


def _xavier(blob, p):
    scale = np.sqrt(3.0 / _fan(blob, p.variance_norm))
    blob.data[...] = rng.generator().uniform(-scale, scale, blob.shape)


def _msra(blob, p):
    std = np.sqrt(2.0 / _fan(blob, p.variance_norm))
    blob.data[...] = rng.generator().normal(0.0, std, blob.shape)


def _bilinear(blob, p):
    """Kernels that upsample bilinearly, for Deconvolution layers (Caffe's formula)."""
    if blob.num_axes != 4 or blob.shape[2] != blob.shape[3]:
        raise CaffeError(f"bilinear filler needs a 4-axis blob with square kernels, "
                         f"got {blob.shape}")
    size = blob.shape[3]
    factor = int(np.ceil(size / 2.0))
    center = np.float32((size - 1) / (2.0 * factor))
    # In float32 throughout, as Caffe computes it.
    ramp = 1 - np.abs(np.arange(size, dtype=np.float32) / np.float32(factor) - center)
    blob.data[...] = np.outer(ramp, ramp)


_FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(blob, filler_param):
    """Fill ``blob`` as ``filler_param`` (a FillerParameter) describes."""
    filler = _FILLERS.get(filler_param.type)
    if filler is None:
        raise CaffeError(f"unknown filler type '{filler_param.type}'; "
                         f"known: {', '.join(sorted(_FILLERS))}")
    if filler_param.sparse != -1 and filler is not _gaussian:
        raise CaffeError(f"filler '{filler_param.type}' does not support sparse "
                         f"(only gaussian does)")
    if blob.count:
        filler(blob, filler_param)


def weight_and_bias(weight_shape, weight_filler, bias_length=0, bias_filler=None):
    """A layer's learned blobs: a filled weight, and a filled bias when ``bias_length``."""
    blobs = [Blob(weight_shape)]
    fill(blobs[0], weight_filler)
    if bias_length:
        blobs.append(Blob((bias_length,)))
        fill(blobs[1], bias_filler)
    return blobs
