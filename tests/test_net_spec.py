"""NetSpec: LeNet written in Python equals models/lenet/lenet_train_test.prototxt; naming rules."""
from pathlib import Path

import pytest

import pycaffe_mct as caffe
from pycaffe_mct import layers as L, params as P
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt, read_prototxt

LENET = Path(__file__).resolve().parents[1] / "models" / "lenet" / "lenet_train_test.prototxt"
LEARNED = [dict(lr_mult=1), dict(lr_mult=2)]


def digits_data(phase, source, batch_size):
    """The Data layer of one phase, named 'digits' as in the prototxt."""
    return L.Data(name="digits", include=dict(phase=phase), source=source, batch_size=batch_size,
                  backend=P.Data.LMDB, transform_param=dict(scale=0.00390625), ntop=2)


def lenet_spec():
    """Caffe's MNIST LeNet as pycaffe's examples write it."""
    n = caffe.NetSpec()
    n.data, n.label = digits_data(caffe.TRAIN, "data/digits/train_lmdb", 64)
    filler = dict(weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.conv1 = L.Convolution(n.data, param=LEARNED, num_output=20, kernel_size=5, stride=1,
                            **filler)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, param=LEARNED, num_output=50, kernel_size=5, stride=1,
                            **filler)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, param=LEARNED, num_output=500, **filler)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, param=LEARNED, num_output=10, **filler)
    n.accuracy = L.Accuracy(n.ip2, n.label, include=dict(phase=caffe.TEST))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    net = n.to_proto()
    # One NetSpec holds one top per name; the TEST phase's Data layer comes from a second one.
    test = caffe.NetSpec()
    test.data, test.label = digits_data(caffe.TEST, "data/digits/test_lmdb", 100)
    net.layer.insert(1, test.to_proto().layer[0])
    net.name = "LeNet"
    return net


def test_lenet_from_netspec_equals_the_prototxt():
    written = lenet_spec()
    by_hand = read_prototxt(LENET, caffe_pb2.NetParameter())
    assert [layer.name for layer in written.layer] == [layer.name for layer in by_hand.layer]
    for mine, theirs in zip(written.layer, by_hand.layer):
        assert mine == theirs, f"layer {mine.name} differs:\n{mine}\nvs\n{theirs}"
    assert written == by_hand
    assert parse_prototxt(str(written), caffe_pb2.NetParameter()) == by_hand


def test_automatic_names_in_place_and_zero_tops():
    data = L.Input(shape=dict(dim=[2, 3]))
    ip = L.InnerProduct(data, num_output=4)
    relu = L.ReLU(ip, in_place=True)
    silence = L.Silence(relu, ntop=0)
    net = caffe.to_proto(silence)
    assert [(layer.name, layer.type) for layer in net.layer] == [
        ("Input1", "Input"), ("InnerProduct1", "InnerProduct"), ("ReLU1", "ReLU"),
        ("Silence1", "Silence")]
    assert list(net.layer[2].bottom) == list(net.layer[2].top) == ["InnerProduct1"]
    assert list(net.layer[3].top) == []
    assert net.layer[0].input_param.shape[0].dim == [2, 3]


def test_several_tops_and_layer_level_fields():
    n = caffe.NetSpec()
    n.data = L.Input(shape=[dict(dim=[2, 6])])
    n.a, n.b = L.Slice(n.data, slice_point=[2], axis=1, ntop=2)
    n.loss = L.SoftmaxWithLoss(n.a, n.b, loss_weight=0.5, propagate_down=[True, False],
                               loss_param=dict(ignore_label=-1))
    net = n.to_proto()
    sliced = net.layer[1]
    assert sliced.name == "a" and list(sliced.top) == ["a", "b"]
    assert sliced.slice_param == caffe_pb2.SliceParameter(slice_point=[2], axis=1)
    loss = net.layer[2]
    assert list(loss.loss_weight) == [0.5] and list(loss.propagate_down) == [True, False]
    assert loss.loss_param.ignore_label == -1


def test_update_keys_and_delete():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2]))
    n.ip = L.InnerProduct(n.data, num_output=3)
    n.update("ip", dict(num_output=7))
    assert n.keys() == ["data", "ip"] and len(n.vals()) == 2
    assert n.to_proto().layer[1].inner_product_param.num_output == 7
    del n["ip"]
    assert n.keys() == ["data"]


def test_params_give_enum_values_and_bad_inputs_are_refused():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB
    with pytest.raises(TypeError, match=r"^ReLU input 0 is not a Top \(type is <class 'str'>\)$"):
        L.ReLU("data")


def test_has_nccl_is_false_our_multi_process_path_is_mpi():
    assert caffe.has_nccl() is False
