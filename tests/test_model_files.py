"""Binary .caffemodel files: our round trip, Caffe's golden file, V1 nets, legacy 4-d blobs."""
import os
import stat

import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import net_passes
from pycaffe_mct.blob import proto_array, proto_shape
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt, read_binary_proto, write_binary_proto

FILL = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 }'

# conv1 and ip as in Caffe's small golden net, without the layers in between that carry
# no weights of their own here (ip reads pool1 directly: LRN keeps the shape).
SMALL = f"""
name: "SmallNet"
layer {{ name: "data" type: "Input" top: "data"
        input_param {{ shape {{ dim: 4 dim: 3 dim: 24 dim: 20 }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 {FILL} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "pool1" top: "ip"
        inner_product_param {{ num_output: 3 {FILL} }} }}
"""


def small_net(phase=caffe.TEST, weights=None):
    param = parse_prototxt(SMALL, caffe_pb2.NetParameter())
    return caffe.Net(param, phase) if weights is None else caffe.Net(param, weights, phase)


def test_our_caffemodel_round_trips_bit_exactly(tmp_path):
    caffe.set_random_seed(11)
    net = small_net()
    first = tmp_path / "first.caffemodel"
    net.save(str(first))
    loaded = small_net(weights=str(first))
    for name, blobs in net.params.items():
        for mine, theirs in zip(blobs, loaded.params[name]):
            assert mine.data.tobytes() == theirs.data.tobytes()
    second = tmp_path / "second.caffemodel"
    loaded.save(str(second))
    assert first.read_bytes() == second.read_bytes()
    saved = read_binary_proto(first, caffe_pb2.NetParameter())
    assert saved.name == "SmallNet"
    assert [layer.name for layer in saved.layer] == ["data", "conv1", "pool1", "ip"]
    assert [tuple(b.shape.dim) for b in saved.layer[1].blobs] == [(8, 3, 3, 3), (8,)]


def test_golden_caffemodel_reserializes_to_the_same_bytes(fixtures_dir):
    data = (fixtures_dir / "small_adam_iter_10.caffemodel").read_bytes()
    param = read_binary_proto(fixtures_dir / "small_adam_iter_10.caffemodel",
                              caffe_pb2.NetParameter())
    assert param.SerializeToString() == data


def test_golden_caffemodel_layers_and_shapes(fixtures_dir):
    param = read_binary_proto(fixtures_dir / "small_adam_iter_10.caffemodel",
                              caffe_pb2.NetParameter())
    shapes = {layer.name: [proto_shape(b) for b in layer.blobs] for layer in param.layer}
    assert param.name == "SmallNet"
    assert list(shapes) == ["data", "conv1", "bn1", "scale1", "relu1", "pool1", "norm1", "ip",
                            "loss"]
    assert shapes["conv1"] == [(8, 3, 3, 3), (8,)]
    assert shapes["bn1"] == [(8,), (8,), (1,)]
    assert shapes["scale1"] == [(8,), (8,)]
    assert shapes["ip"] == [(3, 960), (3,)]


def test_golden_weights_load_by_layer_name_and_save_back_unchanged(fixtures_dir, tmp_path):
    path = fixtures_dir / "small_adam_iter_10.caffemodel"
    golden = {layer.name: layer
              for layer in read_binary_proto(path, caffe_pb2.NetParameter()).layer}
    net = small_net(weights=str(path))                 # layers missing here are ignored
    for name in ("conv1", "ip"):
        for blob, proto in zip(net.params[name], golden[name].blobs):
            np.testing.assert_array_equal(blob.data, proto_array(proto))
    out = tmp_path / "ours.caffemodel"
    net.save(str(out))
    ours = {layer.name: layer for layer in read_binary_proto(out, caffe_pb2.NetParameter()).layer}
    for name in ("conv1", "ip"):
        assert list(ours[name].blobs) == list(golden[name].blobs)   # same messages, same bytes


# ---- V1 nets and legacy blobs -----------------------------------------------------------

V1_TEXT = """
name: "old"
input: "data" input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1
layers { name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip"
         blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
         inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layers { name: "relu" type: RELU bottom: "ip" top: "ip" }
layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" include { phase: TEST } }
"""


def test_v1_prototxt_is_upgraded(tmp_path):
    path = tmp_path / "old.prototxt"
    path.write_text(V1_TEXT)
    net = caffe.Net(str(path), caffe.TEST)
    assert [(layer.name, layer.type) for layer in net.layers] == [
        ("input", "Input"), ("ip", "InnerProduct"), ("relu", "ReLU"), ("prob", "Softmax")]
    assert [(p.lr_mult, p.decay_mult) for p in net.learnables] == [(1.0, 1.0), (2.0, 0.0)]
    assert net.forward(data=np.ones((2, 3, 1, 1)))["prob"].shape == (2, 4)
    train = caffe.Net(str(path), caffe.TRAIN)
    assert [layer.name for layer in train.layers] == ["input", "ip", "relu"]


def test_v1_data_layer_transform_fields_move_to_transform_param():
    param = parse_prototxt('layers { name: "d" type: DATA top: "data" data_param { source: "x" '
                           'scale: 0.5 mean_file: "m" crop_size: 3 mirror: true } }',
                           caffe_pb2.NetParameter())
    layer = net_passes.upgrade(param).layer[0]
    assert layer.type == "Data"
    assert layer.transform_param == caffe_pb2.TransformationParameter(
        scale=0.5, mean_file="m", crop_size=3, mirror=True)
    assert layer.data_param == caffe_pb2.DataParameter(source="x")


def legacy_blob(array, dims):
    proto = caffe_pb2.BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
    proto.data.extend(np.asarray(array, np.float32).ravel().tolist())
    return proto


def test_v1_binary_with_legacy_4d_blobs_loads(tmp_path):
    rng = np.random.default_rng(12)
    weight, bias = rng.standard_normal((4, 3)), rng.standard_normal(4)
    old = caffe_pb2.NetParameter(name="old")
    layer = old.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    layer.blobs.extend([legacy_blob(weight, (1, 1, 4, 3)), legacy_blob(bias, (1, 1, 1, 4))])
    path = tmp_path / "old.caffemodel"
    write_binary_proto(path, old)
    net = caffe.Net(parse_prototxt(V1_TEXT, caffe_pb2.NetParameter()), str(path), caffe.TEST)
    np.testing.assert_array_equal(net.params["ip"][0].data, weight.astype(np.float32))
    np.testing.assert_array_equal(net.params["ip"][1].data, bias.astype(np.float32))


def test_legacy_blob_must_match_from_the_end():
    net = small_net()
    source = caffe_pb2.NetParameter()
    layer = source.layer.add(name="ip")
    layer.blobs.extend([legacy_blob(np.zeros(3 * 960), (1, 3, 1, 960)),
                        legacy_blob(np.zeros(3), (1, 1, 1, 3))])
    with pytest.raises(caffe.ModelFileError, match=r"param 0 of layer 'ip'.*\(1, 3, 1, 960\).*"
                                                   r"\(3, 960\)"):
        net.copy_from(source)


def test_scalar_blobs_round_trip():
    blob = caffe.Blob(())
    blob.data[...] = 3.5
    proto = blob.to_proto(caffe_pb2.BlobProto())
    assert proto_shape(proto) == () and proto_array(proto) == np.float32(3.5)


def test_copy_from_leaves_unmatched_layers_and_accepts_a_message():
    caffe.set_random_seed(13)
    source = small_net()
    target = small_net()
    before = target.params["conv1"][0].data.copy()
    weights = source.to_proto()
    del weights.layer[1]                                  # drop conv1 from the file
    target.copy_from(weights)
    np.testing.assert_array_equal(target.params["conv1"][0].data, before)
    np.testing.assert_array_equal(target.params["ip"][0].data, source.params["ip"][0].data)


def test_share_with_shares_weights_by_layer_name():
    train, test = small_net(caffe.TRAIN), small_net(caffe.TEST)
    test.share_with(train)
    train.params["ip"][0].data[...] = 0.25
    np.testing.assert_array_equal(test.params["ip"][0].data, 0.25)


def test_saved_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "net.caffemodel"
    small_net().save(str(path))
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert list(tmp_path.iterdir()) == [path]             # no temporary file left behind
