"""Bad input is answered with a CaffeError naming the file, line, layer or blob involved."""
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct.errors import ModelFileError, NetError, PrototxtError

GOOD_START = 'name: "n"\nlayer { name: "data" type: "Input" top: "data"\n' \
             '  input_param { shape { dim: 2 dim: 3 } } }\n'


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("body,where,detail", [
    ('layer { name: "ip" type: "InnerProduct" bottom: "data"\n  top: "ip" nonsense: 1 }\n',
     ":5:13:", 'no field named "nonsense"'),                 # columns count from 1
    ('layer { name: "ip" type: InnerProduct }\n', ":4:26:", "Expected string"),
    ('layer { name: "ip" type: "InnerProduct"\n', ":4:", 'Expected "}"'),     # unclosed
])
def test_prototxt_syntax_error_names_file_line_and_column(tmp_path, body, where, detail):
    path = write(tmp_path, GOOD_START + body)
    with pytest.raises(PrototxtError) as info:
        caffe.Net(path, caffe.TEST)
    message = str(info.value)
    assert message.startswith(path + where), message
    assert detail in message


def test_unreadable_prototxt_names_the_file(tmp_path):
    missing = str(tmp_path / "missing.prototxt")
    with pytest.raises(PrototxtError, match=f"{missing}: cannot read"):
        caffe.Net(missing, caffe.TEST)


def test_unknown_layer_type_names_the_layer_and_the_known_types(tmp_path):
    path = write(tmp_path, GOOD_START + 'layer { name: "odd" type: "Convolutoin" bottom: "data" '
                                        'top: "odd" }\n')
    with pytest.raises(NetError) as info:
        caffe.Net(path, caffe.TEST)
    message = str(info.value)
    assert "layer 'odd'" in message and "unknown layer type 'Convolutoin'" in message
    known = message.split("known types: ")[1].split(", ")
    assert {"Convolution", "InnerProduct", "Pooling", "SoftmaxWithLoss"} <= set(known)
    assert known == sorted(known) == caffe.layer_type_list()


def test_bottom_that_nothing_produced_names_layer_and_blob(tmp_path):
    path = write(tmp_path, GOOD_START + 'layer { name: "relu" type: "ReLU" bottom: "dat" '
                                        'top: "r" }\n')
    with pytest.raises(NetError, match=r"layer 'relu' \(type ReLU\): bottom blob 'dat' "
                                       r"\(bottom 0\) is produced by no earlier layer"):
        caffe.Net(path, caffe.TEST)


def test_bottom_produced_only_later_is_also_refused(tmp_path):
    path = write(tmp_path, GOOD_START +
                 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\n'
                 'layer { name: "b" type: "ReLU" bottom: "data" top: "b" }\n')
    with pytest.raises(NetError, match="layer 'a'.*bottom blob 'b'"):
        caffe.Net(path, caffe.TEST)


def weights_file(tmp_path, num_output):
    """A caffemodel of a net whose InnerProduct 'ip' has ``num_output`` outputs."""
    path = write(tmp_path, GOOD_START + 'layer { name: "ip" type: "InnerProduct" bottom: "data" '
                 f'top: "ip" inner_product_param {{ num_output: {num_output} }} }}\n',
                 f"net{num_output}.prototxt")
    weights = str(tmp_path / f"ip{num_output}.caffemodel")
    caffe.Net(path, caffe.TEST).save(weights)
    return path, weights


def test_parameter_shape_mismatch_names_layer_blob_index_and_both_shapes(tmp_path):
    net_path, _ = weights_file(tmp_path, 4)
    _, other = weights_file(tmp_path, 5)
    with pytest.raises(ModelFileError) as info:
        caffe.Net(net_path, other, caffe.TEST)
    message = str(info.value)
    assert other in message and "param 0 of layer 'ip'" in message
    assert "(5, 3)" in message and "(4, 3)" in message


def test_blob_count_mismatch_names_the_layer(tmp_path):
    net_path, weights = weights_file(tmp_path, 4)
    no_bias = write(tmp_path, GOOD_START + 'layer { name: "ip" type: "InnerProduct" '
                    'bottom: "data" top: "ip" inner_product_param { num_output: 4 '
                    'bias_term: false } }\n', "nobias.prototxt")
    with pytest.raises(ModelFileError, match="layer 'ip' has 2 blobs in the file but 1 in the net"):
        caffe.Net(no_bias, weights, caffe.TEST)


@pytest.mark.parametrize("make,expected", [
    (lambda d, f: (f / "small_adam_iter_10.solverstate").read_bytes(), "not a binary NetParameter"),
    (lambda d, f: (f / "mean_resized.binaryproto").read_bytes(), "not a NetParameter"),
    (lambda d, f: b"", "holds no layers"),
    (lambda d, f: np.arange(5.0).tobytes() + b"\x93NUMPY", "not a binary NetParameter"),
    (lambda d, f: GOOD_START.encode(), "looks like a text file"),
])
def test_weights_that_are_not_a_netparameter(tmp_path, fixtures_dir, make, expected):
    net_path, _ = weights_file(tmp_path, 4)
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(make(tmp_path, fixtures_dir))
    with pytest.raises(ModelFileError) as info:
        caffe.Net(net_path, str(bad), caffe.TEST)
    message = str(info.value)
    assert message.startswith(str(bad)) and expected in message
    assert "Traceback" not in message


def test_missing_weights_file(tmp_path):
    net_path, _ = weights_file(tmp_path, 4)
    with pytest.raises(ModelFileError, match="nowhere.caffemodel: cannot read"):
        caffe.Net(net_path, str(tmp_path / "nowhere.caffemodel"), caffe.TEST)


def test_a_layer_bug_is_still_reported_with_the_layer_name(tmp_path):
    path = write(tmp_path, GOOD_START + 'layer { name: "ip" type: "InnerProduct" bottom: "data" '
                 'top: "ip" inner_product_param { num_output: 2 } }\n')
    net = caffe.Net(path, caffe.TEST)
    net.blobs["data"].reshape(2, 5)
    with pytest.raises(NetError, match="layer 'ip'.*weights expect 3"):
        net.forward()
