"""Shared helpers for layer tests: build one layer from prototxt text, make blobs."""
import numpy as np

from pycaffe_mct.blob import Blob
from pycaffe_mct.layer import TRAIN, create_layer
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt


def make_layer(text, phase=TRAIN):
    """A layer from the body of a ``layer { ... }`` block."""
    param = parse_prototxt(text, caffe_pb2.LayerParameter())
    param.phase = phase
    return create_layer(param)


def blobs_from(*arrays):
    """Blobs holding copies of ``arrays`` (float32)."""
    out = []
    for array in arrays:
        array = np.asarray(array, dtype=np.float32)
        blob = Blob(array.shape)
        blob.data[...] = array
        out.append(blob)
    return out


def empty_tops(n):
    return [Blob() for _ in range(n)]


def run_layer(text, *arrays, tops=1, phase=TRAIN):
    """Set up one layer on copies of ``arrays`` and run forward; returns (layer, bottoms, tops)."""
    layer = make_layer(text, phase)
    bottoms, top_blobs = blobs_from(*arrays), empty_tops(tops)
    layer.setup(bottoms, top_blobs)
    layer.forward(bottoms, top_blobs)
    return layer, bottoms, top_blobs


def uniform(*shape, seed=0, low=-1.0, high=1.0):
    """Reproducible float64 test data."""
    return np.random.default_rng(seed).uniform(low, high, shape)
