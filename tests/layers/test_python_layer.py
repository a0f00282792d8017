"""Python layers: pycaffe's caffe.Layer contract, off by default, turned on three ways."""
import os
import sys
import textwrap

import numpy as np
import pytest
from layer_helpers import blobs_from, empty_tops, make_layer, uniform

import pycaffe_mct as caffe
from pycaffe_mct import cli
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive
from pycaffe_mct.layers.python import ENV_VAR

# y = scale * x**2 + offset, with scale a learned parameter and offset from param_str.
USER_MODULE = '''
import numpy as np
import pycaffe_mct as caffe


class SquareLayer(caffe.Layer):
    def setup(self, bottom, top):
        self.offset = float(self.param_str or 0)
        self.seen_phase = self.phase
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 1.5

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data ** 2 + self.offset

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += (top[0].diff * bottom[0].data ** 2).sum()
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * self.blobs[0].data[0] * bottom[0].data * top[0].diff


class FailingLayer(caffe.Layer):
    def setup(self, bottom, top):
        raise KeyError("user setup failed")


class PhaseLayer(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[0] = self.phase


class OwnInitLayer(SquareLayer):
    def __init__(self, param):
        self.made_by_own_init = True


class NotALayer:
    pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of Python layers on sys.path, with Python layers turned on; its name."""
    name = f"user_layers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(ENV_VAR, "1")
    yield name
    sys.modules.pop(name, None)


def layer_text(module, cls, param_str="", extra=""):
    return (f'name: "py" type: "Python" bottom: "x" top: "y" {extra} '
            f'python_param {{ module: "{module}" layer: "{cls}" param_str: "{param_str}" }}')


def net_file(tmp_path, module, cls="SquareLayer", param_str="0.25"):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(f"""\
        name: "pynet" force_backward: true
        input: "x" input_shape {{ dim: 2 dim: 3 }}
        layer {{ {layer_text(module, cls, param_str)} }}
        """))
    return str(path)


def test_off_by_default_says_how_to_turn_on(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert "Python" not in caffe.layer_type_list()
    with pytest.raises(NetError, match=r"layer 'py' \(type Python\): Python layers are off "
                                       r".*PYCAFFE_MCT_PYTHON_LAYERS=1.*set_python_layers"
                                       r"\(True\).*--python-layers"):
        caffe.Net(net_file(tmp_path, "os"), caffe.TRAIN)


@pytest.mark.parametrize("value, on", [("1", True), ("0", False), ("", False), ("yes", True)])
def test_environment_variable_switch(monkeypatch, value, on):
    monkeypatch.setenv(ENV_VAR, value)
    assert ("Python" in caffe.layer_type_list()) is on


def test_set_python_layers_switches_and_is_inherited_through_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    caffe.set_python_layers(True)
    assert "Python" in caffe.layer_type_list()
    assert os.environ[ENV_VAR] == "1"     # what mpiexec ranks and workers inherit
    caffe.set_python_layers(False)
    assert "Python" not in caffe.layer_type_list()


def test_command_line_flag_turns_them_on_and_is_removed(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    argv = cli.take_python_layers_flag(["train", "--python-layers", "--solver", "s.prototxt"])
    assert argv == ["train", "--solver", "s.prototxt"]
    assert "Python" in caffe.layer_type_list()


def test_forward_matches_numpy_with_param_str(user_module):
    x = uniform(2, 3)
    layer = make_layer(layer_text(user_module, "SquareLayer", "0.25"))
    bottoms, tops = blobs_from(x), empty_tops(1)
    layer.setup(bottoms, tops)
    layer.forward(bottoms, tops)
    np.testing.assert_allclose(tops[0].data, 1.5 * x ** 2 + 0.25, rtol=1e-6)
    assert layer.python_layer.offset == 0.25
    assert layer.offset == 0.25            # net.layers[i] answers the user's attributes


def test_backward_passes_the_gradient_check(user_module):
    layer = make_layer(layer_text(user_module, "SquareLayer", "0.25"))
    check_gradient_exhaustive(layer, blobs_from(uniform(2, 3, seed=3)), empty_tops(1),
                              threshold=1e-2)


def test_net_forward_backward_reshape_and_weights(tmp_path, user_module):
    net = caffe.Net(net_file(tmp_path, user_module), caffe.TRAIN)
    x = uniform(2, 3, seed=1)
    out = net.forward(x=x)["y"]
    np.testing.assert_allclose(out, 1.5 * x ** 2 + 0.25, rtol=1e-6)
    net.blobs["y"].diff[...] = 1
    grads = net.backward()
    np.testing.assert_allclose(grads["x"], 3.0 * x, rtol=1e-6)
    assert net.params["py"][0].diff[0] == pytest.approx((x ** 2).sum(), rel=1e-5)
    net.blobs["x"].reshape(4, 5)
    net.forward()
    assert net.blobs["y"].data.shape == (4, 5)
    net.params["py"][0].data[0] = 7
    net.save(str(tmp_path / "w.caffemodel"))
    other = caffe.Net(net_file(tmp_path, user_module), str(tmp_path / "w.caffemodel"),
                      caffe.TEST)
    assert other.params["py"][0].data[0] == 7


def test_phase_is_the_nets(tmp_path, user_module):
    path = tmp_path / "phase.prototxt"
    path.write_text(f'layer {{ name: "p" type: "Python" top: "phase" python_param {{ '
                    f'module: "{user_module}" layer: "PhaseLayer" }} }}')
    for phase in (caffe.TRAIN, caffe.TEST):
        assert caffe.Net(str(path), phase).forward()["phase"][0] == phase


def test_user_exception_keeps_its_type_and_names_the_layer(tmp_path, user_module):
    with pytest.raises(KeyError, match="user setup failed") as info:
        caffe.Net(net_file(tmp_path, user_module, "FailingLayer"), caffe.TRAIN)
    assert any("layer 'py' (type Python" in note for note in info.value.__notes__)


@pytest.mark.parametrize("module_suffix, cls, expected", [
    ("_missing", "SquareLayer", r"cannot import Python module '\w+_missing'.*PYTHONPATH"),
    ("", "NoSuchLayer", r"\w+\.NoSuchLayer is not a caffe.Layer subclass"),
    ("", "NotALayer", r"\w+\.NotALayer is not a caffe.Layer subclass"),
])
def test_bad_python_param_is_a_clear_error(tmp_path, user_module, module_suffix, cls, expected):
    with pytest.raises(NetError, match=r"layer 'py' \(type Python\): " + expected):
        caffe.Net(net_file(tmp_path, user_module + module_suffix, cls), caffe.TRAIN)


def test_python_param_needs_module_and_layer(user_module):
    with pytest.raises(NetError, match="python_param needs both module and layer"):
        make_layer('name: "py" type: "Python" python_param { module: "m" }')


def test_a_user_init_that_skips_super_still_gets_blobs(user_module):
    layer = make_layer(layer_text(user_module, "OwnInitLayer", "1"))
    layer.setup(blobs_from(uniform(2, 2)), empty_tops(1))
    assert layer.made_by_own_init and len(layer.blobs) == 1
