"""caffe.draw and the draw_net command: graphs of every model, labels, phases, errors.

Only the rendering test needs Graphviz's dot; the rest check the pydot graph and
its dot source.
"""
import shutil
import sys
from pathlib import Path

import pytest

from pycaffe_mct import draw
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.layer import TEST, TRAIN
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt, read_prototxt
from pycaffe_mct.tools import draw_net as draw_net_tool

MODELS = Path(__file__).resolve().parents[1] / "models"
NET_FILES = sorted(p for p in MODELS.rglob("*.prototxt") if "solver" not in p.name)
LENET = MODELS / "lenet" / "lenet_train_test.prototxt"


def node_names(graph):
    """The nodes' names without the quotes pydot adds to some."""
    return {node.get_name().strip('"') for node in graph.get_nodes()}


@pytest.mark.parametrize("path", NET_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_model_draws_every_layer_and_blob(path):
    net = read_prototxt(path, caffe_pb2.NetParameter())
    graph = draw.get_pydot_graph(net, "LR")
    labels = node_names(graph)
    for layer in net.layer:
        assert draw.get_layer_label(layer, "LR").strip('"') in labels
    blobs = {name for layer in net.layer for name in list(layer.bottom) + list(layer.top)}
    assert blobs <= labels
    assert len(graph.get_edges()) == sum(len(l.bottom) + len(l.top) for l in net.layer)


def test_phase_keeps_only_that_phases_layers():
    """LeNet's two data layers differ by batch size: 64 in TRAIN, 100 in TEST (Accuracy)."""
    net = read_prototxt(LENET, caffe_pb2.NetParameter())
    test_source = draw.get_pydot_graph(net, "LR", phase=TEST).to_string()
    train_source = draw.get_pydot_graph(net, "LR", phase=TRAIN).to_string()
    every_source = draw.get_pydot_graph(net, "LR").to_string()
    assert "Batch 100" in test_source and "Batch 64" not in test_source
    assert "Batch 64" in train_source and "Batch 100" not in train_source
    assert "Batch 64" in every_source and "Batch 100" in every_source
    assert "(Accuracy)" in test_source and "(Accuracy)" not in train_source


def layer(text):
    return parse_prototxt(text, caffe_pb2.LayerParameter())


def test_labels_in_caffes_words():
    pool = layer('name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 }')
    assert draw.get_layer_label(pool, "LR") == \
        r'"p\n(Pooling AVE)\nkernel size: 3\nstride: 2\npad: 0"'
    conv = layer('name: "c" type: "Convolution" param { lr_mult: 0 } param { lr_mult: 2 } '
                 'convolution_param { num_output: 8 kernel_size: 5 pad: 2 }')
    assert draw.get_layer_label(conv, "TB", display_lrm=True) == \
        '"c (Convolution) kernel size: 5 stride: 1 pad: 2 lr mult: 0.0, 2.0"'
    assert draw.get_edge_label(conv) == "8"
    frozen = layer('name: "f" type: "InnerProduct" param { lr_mult: 0 } param { lr_mult: 0 }')
    assert "lr mult" not in draw.get_layer_label(frozen, "LR", display_lrm=True)
    with pytest.raises(CaffeError, match="ReLU layers do not have a learning rate multiplier"):
        draw.get_layer_lr_mult(layer('name: "r" type: "ReLU"'))


def test_include_and_exclude_together_is_an_error():
    net = caffe_pb2.NetParameter()
    net.layer.add().CopyFrom(layer('name: "x" type: "ReLU" include { phase: TRAIN } '
                                   'exclude { phase: TEST }'))
    with pytest.raises(CaffeError, match="layer 'x' has both include and exclude"):
        draw.get_pydot_graph(net, "LR", phase=TRAIN)


def test_raw_needs_no_graphviz_and_an_image_names_it(tmp_path, monkeypatch):
    net = read_prototxt(LENET, caffe_pb2.NetParameter())
    monkeypatch.setenv("PATH", str(tmp_path))          # no dot anywhere
    draw.draw_net_to_file(net, str(tmp_path / "lenet.raw"))
    assert (tmp_path / "lenet.raw").read_text().startswith("digraph LeNet {")
    with pytest.raises(CaffeError, match=r"needs Graphviz's 'dot' program.*install Graphviz"):
        draw.draw_net(net, "LR", "png")


def test_without_pydot_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(CaffeError, match=r"pip install -e '.\[draw\]'"):
        draw.get_pydot_graph(caffe_pb2.NetParameter(), "LR")


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot program is not installed (apt-get install graphviz)")
def test_draw_net_command_renders_a_png(tmp_path, capsys):
    out = tmp_path / "lenet.png"
    assert draw_net_tool.main([str(LENET), str(out), "--phase", "TEST", "--display_lrm"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert f"Drawing net to {out}" in capsys.readouterr().out


def test_draw_net_command_errors_are_one_line(tmp_path, capsys):
    assert draw_net_tool.main([str(tmp_path / "missing.prototxt"), str(tmp_path / "x.raw")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
