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
    """Random weights that keep activations of order one through deep nets (He-scaled
    weights), BatchNorm statistics stored times a scale factor of 4, Scale gammas near 1."""
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
            elif blob.num_axes > 1:
                fan_in = blob.count // blob.shape[0]
                blob.data[...] = rng.standard_normal(blob.shape, np.float32) * \
                    np.float32(np.sqrt(2.0 / fan_in))
            else:
                blob.data[...] = rng.normal(0, 0.1, blob.shape)


def net_from_text(text, phase=TEST):
    """A Net from prototxt text."""
    return Net(parse_prototxt(text, caffe_pb2.NetParameter()), phase)
