"""Export a net, check the graph with onnx.checker, run it in ONNX Runtime, compare."""
import numpy as np
import onnx
import onnxruntime

from pycaffe_mct.layer import TEST
from pycaffe_mct.net import Net
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt


def relative_error(theirs, ours):
    """max |theirs - ours| / max |ours| over a blob."""
    scale = np.abs(ours).max()
    return float(np.abs(theirs - ours).max() / scale) if scale else float(np.abs(theirs).max())


def session(path):
    """An ONNX Runtime CPU session on one thread (the machine's cores are shared)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path, inputs):
    """{output name: value} of the ONNX model at ``path`` on ``inputs`` (name -> array)."""
    runner = session(path)
    names = [output.name for output in runner.get_outputs()]
    values = runner.run(names, {name: np.asarray(value, np.float32)
                                for name, value in inputs.items()})
    return dict(zip(names, values))


def export_and_compare(net, path, inputs, **options):
    """Export ``net`` to ``path`` (checked by onnx.checker with shape inference), run it
    in ONNX Runtime on ``inputs``; {output: relative error against net.forward}."""
    ours = {name: value.copy() for name, value in net.forward(**inputs).items()}
    net.to_onnx(path, **options)
    onnx.checker.check_model(str(path), full_check=True)
    theirs = run_onnx(path, inputs)
    assert sorted(theirs) == sorted(net.outputs)
    for name, value in theirs.items():
        assert value.shape == ours[name].shape, name
    return {name: relative_error(theirs[name], ours[name]) for name in net.outputs}


def randomize(net, seed=0):
    """Random weights that keep activations of order one through deep nets (weights of
    He's variance), BatchNorm statistics stored times a scale factor of 4, Scale gammas near 1."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        blobs = layer.blobs
        if layer.type == "BatchNorm":
            factor = np.float32(4)
            blobs[0].data[...] = rng.uniform(-0.5, 0.5, blobs[0].shape) * factor
            blobs[1].data[...] = rng.uniform(0.5, 2, blobs[1].shape) * factor
            blobs[2].data[...] = factor
            continue
        for index, blob in enumerate(blobs):
            if layer.type == "Scale" and index == 0:
                blob.data[...] = rng.uniform(0.5, 1.5, blob.shape)
            elif layer.type == "PReLU":
                blob.data[...] = rng.uniform(0, 0.5, blob.shape)
            elif blob.num_axes > 1:      # uniform: cheaper draws than normal for VGG's 138M
                fan_in = blob.count // blob.shape[0]
                half_width = np.float32(np.sqrt(3 * 2.0 / fan_in))   # variance 2 / fan_in
                rng.random(blob.shape, np.float32, out=blob.data)
                blob.data[...] -= np.float32(0.5)
                blob.data[...] *= 2 * half_width
            else:
                blob.data[...] = rng.normal(0, 0.1, blob.shape)


def calibrate_batch_norms(net, inputs, seed=0):
    """Stored BatchNorm statistics within 25% of each channel's actual ones on ``inputs``
    (times the scale factor), as after training: random ones would let ResNet-50's
    activations grow through its 16 residual sums until its softmax saturates."""
    rng = np.random.default_rng(seed)
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    start = 0
    for index, layer in enumerate(net.layers):
        if layer.type != "BatchNorm":
            continue
        net.forward_from_to(start, index - 1)
        start = index
        x = net.bottom_vecs[index][0].data
        per_channel = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
        mean, var, factor = layer.blobs
        mean.data[...] = per_channel.mean(axis=1) * factor.data[0]
        var.data[...] = per_channel.var(axis=1) * rng.uniform(0.8, 1.25, var.shape) * \
            factor.data[0]


def net_from_text(text, phase=TEST):
    """A Net from prototxt text."""
    return Net(parse_prototxt(text, caffe_pb2.NetParameter()), phase)
