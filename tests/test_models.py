"""models/: every net builds in TRAIN and TEST, has the known output shapes and parameter
counts, and runs forward/backward once at a small batch.

Counts: ``learned`` is every parameter with lr_mult > 0 (weights, biases, Scale's
gamma/beta); ``statistics`` is BatchNorm's mean, variance and scale factor (lr_mult 0).
"""
import numpy as np
import pytest

from model_helpers import MODELS, generator, with_inputs_for_data
from pycaffe_mct.layer import TEST, TRAIN
from pycaffe_mct.net import Net
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_prototxt

# name: (learned parameters, BatchNorm statistics, crop side)
KNOWN = {
    "cifar10_quick": (145_578, 0, 32),
    "cifar10_full": (89_578, 0, 32),
    "caffenet": (60_965_224, 0, 227),
    "alexnet": (60_965_224, 0, 227),
    "vgg16": (138_357_544, 0, 224),
    "googlenet": (6_998_552, 0, 224),    # deploy: without the two auxiliary heads
    "resnet50": (25_557_032, 53_173, 224),  # 53 BatchNorms: 2 x 26,560 channels + 53 factors
}
GOOGLENET_AUXILIARY = 2 * (128 * 512 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000) + \
    128 * (528 - 512)
BIG = {"caffenet", "alexnet", "vgg16", "googlenet", "resnet50"}


def marks(name):
    return [pytest.mark.slow] if name in BIG else []


def counts(net):
    learned = statistics = 0
    for learnable in net.learnables:
        if learnable.lr_mult > 0:
            learned += learnable.blob.count
        else:
            statistics += learnable.blob.count
    return learned, statistics


def test_committed_prototxt_matches_the_generator():
    for name in KNOWN:
        for variant, make in (("deploy", generator.deploy), ("train_val", generator.train_val)):
            on_disk = read_prototxt(str(MODELS / name / f"{variant}.prototxt"),
                                    caffe_pb2.NetParameter())
            assert on_disk == make(name), f"models/{name}/{variant}.prototxt is stale"


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in KNOWN])
def test_deploy_shapes_and_parameter_counts(name):
    net = Net(str(MODELS / name / "deploy.prototxt"), TEST)
    side = KNOWN[name][2]
    batch = net.blobs["data"].shape[0]
    assert net.blobs["data"].shape == (batch, 3, side, side)
    assert net.blobs["prob"].shape == (batch, 1000 if side > 32 else 10)
    assert counts(net) == KNOWN[name][:2]


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in KNOWN])
def test_train_val_builds_in_both_phases_and_runs_once(name):
    param = with_inputs_for_data(read_prototxt(str(MODELS / name / "train_val.prototxt"),
                                               caffe_pb2.NetParameter()), batch=1)
    classes = 10 if KNOWN[name][2] == 32 else 1000
    test_net = Net(param, TEST)
    assert test_net.blobs["accuracy"].shape == ()
    train_net = Net(param, TRAIN)
    learned, _ = counts(train_net)
    expected = KNOWN[name][0] + (GOOGLENET_AUXILIARY if name == "googlenet" else 0)
    assert learned == expected
    assert "accuracy" not in train_net.blobs
    rng = np.random.default_rng(0)
    inputs = {"data": rng.standard_normal(train_net.blobs["data"].shape),
              "label": rng.integers(0, classes, 1)}
    train_net.forward(**inputs)
    loss = float(train_net.blobs["loss"].data)
    assert np.isfinite(loss) and loss > 0
    train_net.clear_param_diffs()
    train_net.backward()
    first = train_net.learnable_params[0]
    assert np.isfinite(first.diff).all() and np.abs(first.diff).max() > 0


def _storage_ids(net):
    blobs = list(net.blobs.values()) + [b for layer in net.layers for b in layer.blobs]
    return {id(storage.array) for blob in blobs for storage in (blob._data, blob._diff)}


def test_in_place_layers_share_the_blob():
    net = Net(generator.deploy("resnet50", width=16, batch=1), TRAIN)
    for layer in ("bn_conv1", "scale_conv1", "conv1_relu"):
        index = list(net.layer_dict).index(layer)
        assert net.layer_facts[index].tops[0] is net.blobs["conv1"]


def test_iterations_reuse_blob_storage():
    net = Net(with_inputs_for_data(generator.train_val("cifar10_full"), batch=4), TRAIN)
    net.blobs["label"].data[...] = [1, 2, 3, 4]
    net.forward_backward()
    before = _storage_ids(net)
    for _ in range(2):
        net.clear_param_diffs()
        net.forward_backward()
    assert _storage_ids(net) == before
