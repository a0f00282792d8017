"""Out-of-range layer parameters fail at net construction with a message naming the
layer, the parameter and the shapes involved."""
import pytest

from pycaffe_mct.errors import NetError
from pycaffe_mct.layer import TEST
from pycaffe_mct.net import Net
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt

INPUTS = '''
layer { name: "in" type: "Input" top: "a" top: "b"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 }
                      shape { dim: 2 dim: 4 dim: 8 dim: 8 } } }
'''


def build(layer_text):
    param = parse_prototxt(INPUTS + layer_text, caffe_pb2.NetParameter())
    return Net(param, TEST)


@pytest.mark.parametrize("layer_text,expected", [
    ('layer { name: "c" type: "Convolution" bottom: "a" top: "c" '
     'convolution_param { num_output: 2 kernel_size: 3 stride: 0 } }',
     r"layer 'c' \(type Convolution\): stride \(0, 0\) must be positive"),
    ('layer { name: "d" type: "Deconvolution" bottom: "a" top: "d" '
     'convolution_param { num_output: 2 kernel_size: 3 stride: 0 } }',
     r"layer 'd' \(type Deconvolution\): stride \(0, 0\) must be positive"),
    ('layer { name: "p" type: "Pooling" bottom: "a" top: "p" '
     'pooling_param { kernel_size: 2 stride: 0 } }',
     r"layer 'p' \(type Pooling\): stride \(0, 0\) must be positive"),
    ('layer { name: "c" type: "Convolution" bottom: "a" top: "c" '
     'convolution_param { num_output: 2 kernel_size: 11 pad: 1 } }',
     r"layer 'c'.*kernel \(11, 11\).*larger than the padded input 8x8 \(pad \(1, 1\)\)"),
    ('layer { name: "p" type: "Pooling" bottom: "a" top: "p" '
     'pooling_param { kernel_size: 9 } }',
     r"layer 'p'.*kernel \(9, 9\) is larger than the padded input 8x8"),
    ('layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" '
     'concat_param { axis: 4 } }',
     r"layer 'cat'.*axis 4 out of range for bottom shape \(2, 3, 8, 8\)"),
    ('layer { name: "sl" type: "Slice" bottom: "a" top: "x" top: "y" slice_param { axis: -5 } }',
     r"layer 'sl'.*axis -5 out of range for bottom shape \(2, 3, 8, 8\)"),
    ('layer { name: "s" type: "Scale" bottom: "a" top: "s" scale_param { axis: 4 } }',
     r"layer 's'.*axis 4 out of range for bottom shape \(2, 3, 8, 8\)"),
    ('layer { name: "r" type: "Reduction" bottom: "a" top: "r" reduction_param { axis: 9 } }',
     r"layer 'r'.*axis 9 out of range for bottom shape \(2, 3, 8, 8\)"),
    ('layer { name: "t" type: "Tile" bottom: "a" top: "t" tile_param { axis: 5 tiles: 2 } }',
     r"layer 't'.*axis 5 out of range for bottom shape \(2, 3, 8, 8\)"),
    ('layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }',
     r"layer 'sum' \(type Eltwise\): bottom 1 has shape \(2, 4, 8, 8\) but bottom 0 has "
     r"\(2, 3, 8, 8\)"),
    ('layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" '
     'concat_param { axis: 2 } }',
     r"layer 'cat'.*bottom 1 has shape \(2, 4, 8, 8\), bottom 0 has \(2, 3, 8, 8\): all axes "
     r"but the concat axis 2 must agree"),
    ('layer { name: "crop" type: "Crop" bottom: "b" bottom: "a" top: "crop" '
     'crop_param { axis: 1 offset: 2 } }',
     r"layer 'crop'.*size 3 at offset 2 on axis 1 does not fit bottom shape \(2, 4, 8, 8\)"),
    ('layer { name: "lrn" type: "LRN" bottom: "a" top: "lrn" lrn_param { local_size: 2 } }',
     r"layer 'lrn'.*local_size 2 must be a positive odd number"),
])
def test_bad_parameter_fails_at_construction(layer_text, expected):
    with pytest.raises(NetError, match=expected):
        build(layer_text)


def test_python_layers_are_refused_unless_turned_on(monkeypatch):
    monkeypatch.delenv("PYCAFFE_MCT_PYTHON_LAYERS", raising=False)
    with pytest.raises(NetError, match=r"layer 'py' \(type Python\): Python layers are off"):
        build('layer { name: "py" type: "Python" bottom: "a" top: "p" '
              'python_param { module: "evil" layer: "Run" } }')
