"""LeNet (models/lenet) builds in TRAIN and TEST and runs forward and backward."""
from pathlib import Path

import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_prototxt

MODELS = Path(__file__).resolve().parents[1] / "models" / "lenet"


def lenet_fed_by_inputs():
    """lenet_train_test.prototxt with each Data layer replaced by an Input of the same shape,
    so the test needs no database."""
    param = read_prototxt(MODELS / "lenet_train_test.prototxt", caffe_pb2.NetParameter())
    for layer in param.layer:
        if layer.type == "Data":
            batch = layer.data_param.batch_size
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add(dim=[batch, 1, 28, 28])
            layer.input_param.shape.add(dim=[batch])
    return param


@pytest.mark.parametrize("phase,batch,outputs", [(caffe.TRAIN, 64, ["loss"]),
                                                 (caffe.TEST, 100, ["accuracy", "loss"])])
def test_lenet_builds_and_runs(phase, batch, outputs):
    caffe.set_random_seed(1)
    net = caffe.Net(lenet_fed_by_inputs(), phase)
    assert net.outputs == outputs and net.inputs == ["data", "label"]
    shapes = {name: net.blobs[name].shape
              for name in ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2")}
    assert shapes == {"conv1": (batch, 20, 24, 24), "pool1": (batch, 20, 12, 12),
                      "conv2": (batch, 50, 8, 8), "pool2": (batch, 50, 4, 4),
                      "ip1": (batch, 500), "ip2": (batch, 10)}
    rng = np.random.default_rng(2)
    out = net.forward(data=rng.uniform(0, 1, (batch, 1, 28, 28)),
                      label=rng.integers(0, 10, batch))
    assert sorted(out) == outputs
    assert out["loss"] == pytest.approx(np.log(10), rel=0.2)   # untrained: about uniform
    net.clear_param_diffs()
    net.backward()
    for name, blobs in net.params.items():
        assert np.abs(blobs[0].diff).sum() > 0, name
    assert np.abs(net.blobs["data"].diff).sum() == 0           # no backward into the data


def test_lenet_train_and_test_share_weights_through_a_caffemodel(tmp_path):
    train = caffe.Net(lenet_fed_by_inputs(), caffe.TRAIN)
    weights = tmp_path / "lenet.caffemodel"
    train.save(str(weights))
    caffe.set_mode_cpu()
    deploy = caffe.Net(str(MODELS / "lenet_deploy.prototxt"), str(weights), caffe.TEST)
    keyword = caffe.Net(str(MODELS / "lenet_deploy.prototxt"), caffe.TEST, weights=str(weights))
    for name in ("conv1", "conv2", "ip1", "ip2"):
        np.testing.assert_array_equal(deploy.params[name][0].data, train.params[name][0].data)
        np.testing.assert_array_equal(keyword.params[name][1].data, train.params[name][1].data)
    prob = deploy.forward(data=np.zeros((2, 1, 28, 28)))["prob"]
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
