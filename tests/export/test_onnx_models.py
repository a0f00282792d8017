"""The deploy nets of models/ exported to ONNX and run in ONNX Runtime at batch 2.

Random weights (He's variance, so activations stay of order one through the
depth; BatchNorm statistics near the actual ones, stored with a scale factor of
4) and random inputs; the prob output must agree with our forward within 1e-4
relative (max |ONNX - ours| / max |ours|).  Measured 2026-12-02 (onnxruntime
1.32): worst 3.7e-5 (ResNet-50: float32 rounding through 53 convolutions and
BatchNorms; 2.0e-5 with ONNX Runtime's graph optimisations off), the others
3e-6 or less; see docs/deploy.md for every net.
The fillers of the prototxt are dropped before the net is built (the weights
are replaced anyway), which saves VGG-16 seconds of Gaussian draws.
"""
import numpy as np
import pytest

from model_helpers import MODELS
from onnx_helpers import calibrate_batch_norms, export_and_compare, randomize
from pycaffe_mct.layer import TEST
from pycaffe_mct.net import Net
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_prototxt

NETS = {
    "lenet": "lenet/lenet_deploy.prototxt",
    "cifar10_quick": "cifar10_quick/deploy.prototxt",
    "cifar10_full": "cifar10_full/deploy.prototxt",
    "caffenet": "caffenet/deploy.prototxt",
    "alexnet": "alexnet/deploy.prototxt",
    "vgg16": "vgg16/deploy.prototxt",
    "googlenet": "googlenet/deploy.prototxt",
    "resnet50": "resnet50/deploy.prototxt",
}
BIG = {"caffenet", "alexnet", "vgg16", "googlenet", "resnet50"}
BATCH = 2
TOLERANCE = 1e-4


def deploy_net(name, batch):
    """The deploy net of models/ at ``batch``, with random weights."""
    param = read_prototxt(str(MODELS / NETS[name]), caffe_pb2.NetParameter())
    for layer in param.layer:
        if layer.type == "Input":
            layer.input_param.shape[0].dim[0] = batch
        for field in ("convolution_param", "inner_product_param"):
            if layer.HasField(field):
                getattr(layer, field).ClearField("weight_filler")
                getattr(layer, field).ClearField("bias_filler")
    net = Net(param, TEST)
    randomize(net)
    return net


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in BIG else [])
                                  for n in NETS])
def test_deploy_net_matches_in_onnx_runtime(name, tmp_path):
    net = deploy_net(name, BATCH)
    data = np.random.default_rng(2).uniform(-1, 1, net.blobs["data"].shape)
    calibrate_batch_norms(net, {"data": data})
    errors = export_and_compare(net, tmp_path / f"{name}.onnx", {"data": data})
    print(f"{name}: " + ", ".join(f"{output} relative error {error:.2e}"
                                  for output, error in errors.items()))
    assert net.outputs == ["prob"] and errors["prob"] < TOLERANCE
