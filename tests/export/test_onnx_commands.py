"""``pycaffe_mct export`` and the deploy helper mct_train calls, on LeNet's deploy net."""
import numpy as np
import pytest

from model_helpers import MODELS
from onnx_helpers import randomize, relative_error, run_onnx
from pycaffe_mct.cli import main
from pycaffe_mct.export import export_deploy_if_available
from pycaffe_mct.layer import TEST
from pycaffe_mct.net import Net

LENET = str(MODELS / "lenet" / "lenet_deploy.prototxt")


@pytest.fixture
def lenet_weights(tmp_path):
    """A .caffemodel of LeNet's deploy net with random weights."""
    net = Net(LENET, TEST)
    randomize(net)
    path = tmp_path / "lenet.caffemodel"
    net.save(str(path))
    return str(path)


def test_export_command_writes_a_model_onnx_runtime_agrees_with(tmp_path, lenet_weights,
                                                                 capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["export", "--model", LENET, "--weights", lenet_weights, "--onnx", str(out),
                 "--dynamic-batch"]) == 0
    assert capsys.readouterr().out == (f"Wrote {out}: opset 17, symbolic batch, inputs data, "
                                       f"outputs prob\n")
    data = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28))   # not the prototxt's 64
    ours = Net(LENET, lenet_weights, TEST).forward(data=data)["prob"]
    theirs = run_onnx(out, {"data": data})["prob"]
    assert theirs.shape == (3, 10)
    assert relative_error(theirs, ours) < 1e-5      # measured 1.2e-6


def test_export_command_bad_input_is_one_error_line(tmp_path, lenet_weights, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["export", "--model", LENET, "--weights", str(tmp_path / "missing"),
                 "--onnx", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "missing" in error
    assert main(["export", "--model", LENET, "--weights", lenet_weights, "--onnx", str(out),
                 "--opset", "99"]) == 1
    assert "opset 99 is outside" in capsys.readouterr().err
    assert not out.exists()


def test_deploy_helper_writes_beside_the_caffemodel_and_logs(lenet_weights):
    lines = []
    written = export_deploy_if_available(LENET, lenet_weights, log=lines.append)
    assert written == lenet_weights[:-len(".caffemodel")] + ".onnx"
    assert lines == [f"Wrote ONNX model {written}"]
    data = np.random.default_rng(0).uniform(0, 1, (64, 1, 28, 28))
    ours = Net(LENET, lenet_weights, TEST).forward(data=data)["prob"]
    assert relative_error(run_onnx(written, {"data": data})["prob"], ours) < 1e-5


def test_deploy_helper_logs_a_net_it_cannot_export(tmp_path, lenet_weights):
    prototxt = tmp_path / "with_argmax.prototxt"
    prototxt.write_text(open(LENET).read() + 'layer { name: "top1" type: "ArgMax" '
                                             'bottom: "prob" top: "top1" }\n')
    lines = []
    assert export_deploy_if_available(str(prototxt), lenet_weights, log=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith(
        "ONNX export skipped: layer 'top1' (type ArgMax): cannot be exported to ONNX")
    assert not (tmp_path / "lenet.onnx").exists()
