"""Built-in layer types, one family per module; importing registers them all.

This package is also pycaffe's ``caffe.layers``: any capitalised attribute,
``layers.Convolution`` say, is the NetSpec constructor for that layer type.
"""
from . import accuracy, conv, inner_product, input, neuron, pooling, softmax, utility  # noqa: F401
from . import data  # noqa: F401
from . import hdf5, mct, python  # noqa: F401
from . import (activation, deconv, eltwise, loss, normalization, parameter,  # noqa: F401
               scale, shape)


def __getattr__(name):
    if name[:1].isupper():
        from ..net_spec import layer_function
        return layer_function(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
