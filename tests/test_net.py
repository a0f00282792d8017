"""Net: state rules, inputs, splits, in-place layers, losses, backward-need analysis, sharing,
reshaping and the pycaffe forward/backward API."""
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import net_passes
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt

FILL = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 }'


def net_param(text):
    return parse_prototxt(text, caffe_pb2.NetParameter())


def make_net(text, phase=caffe.TRAIN, **kwargs):
    return caffe.Net(net_param(text), phase, **kwargs)


def layer_names(net):
    return [layer.name for layer in net.layers]


def input_layer(name="data", dims=(2, 3)):
    dims_text = " ".join(f"dim: {d}" for d in dims)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f'input_param {{ shape {{ {dims_text} }} }} }}')


def ip_layer(name, bottom, outputs=2, extra=""):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'{extra} '
            f'inner_product_param {{ num_output: {outputs} {FILL} }} }}')


# ---- include / exclude rules ------------------------------------------------------------

RULES = input_layer() + """
layer { name: "train_only" type: "ReLU" bottom: "data" top: "a" include { phase: TRAIN } }
layer { name: "test_only" type: "ReLU" bottom: "data" top: "b" include { phase: TEST } }
layer { name: "not_test" type: "ReLU" bottom: "data" top: "c" exclude { phase: TEST } }
layer { name: "level2" type: "ReLU" bottom: "data" top: "d" include { min_level: 2 } }
layer { name: "upto1" type: "ReLU" bottom: "data" top: "e" include { max_level: 1 } }
layer { name: "deploy" type: "ReLU" bottom: "data" top: "f" include { stage: "deploy" } }
layer { name: "both" type: "ReLU" bottom: "data" top: "g" include { stage: "x" stage: "y" } }
layer { name: "no_x" type: "ReLU" bottom: "data" top: "h" include { not_stage: "x" } }
layer { name: "either" type: "ReLU" bottom: "data" top: "i"
        include { stage: "x" } include { phase: TEST } }
layer { name: "excluded_x" type: "ReLU" bottom: "data" top: "j" exclude { stage: "x" } }
"""


@pytest.mark.parametrize("phase,level,stages,expected", [
    (caffe.TRAIN, None, None, ["train_only", "not_test", "upto1", "no_x", "excluded_x"]),
    (caffe.TEST, None, None, ["test_only", "upto1", "no_x", "either", "excluded_x"]),
    (caffe.TRAIN, 2, None, ["train_only", "not_test", "level2", "no_x", "excluded_x"]),
    (caffe.TRAIN, 1, ["deploy", "x"], ["train_only", "not_test", "upto1", "deploy", "either"]),
    (caffe.TEST, 0, ["x", "y"], ["test_only", "upto1", "both", "either"]),
])
def test_phase_level_and_stage_rules(phase, level, stages, expected):
    net = make_net(RULES, phase, level=level, stages=stages)
    assert [name for name in layer_names(net) if not name.endswith("_split")] == ["data"] + expected
    assert all(layer.phase == phase for layer in net.layers)


def test_state_rule_pass_on_its_own():
    state = caffe_pb2.NetState(phase=caffe.TEST, level=3, stage=["a"])
    rule = caffe_pb2.NetStateRule(min_level=2, max_level=3, stage=["a"], not_stage=["b"])
    assert net_passes.state_meets_rule(state, rule)
    state.stage.append("b")
    assert not net_passes.state_meets_rule(state, rule)


def test_include_and_exclude_together_is_an_error():
    text = input_layer() + ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
                            'include { phase: TRAIN } exclude { phase: TEST } }')
    with pytest.raises(CaffeError, match="layer 'r' has both include and exclude"):
        make_net(text)


def test_phase_must_be_train_or_test():
    with pytest.raises(CaffeError, match="phase must be"):
        make_net(input_layer(), "models/x.caffemodel")


# ---- inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    'input: "data" input_shape { dim: 2 dim: 3 } input: "label" input_shape { dim: 2 }',
    'input: "data" input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1 '
    'input: "label" input_dim: 2 input_dim: 1 input_dim: 1 input_dim: 1',
])
def test_net_level_inputs_become_an_input_layer(header):
    # The loss names no top: it gets an anonymous one, a loss but not an output (as Caffe).
    net = make_net(header + " " + ip_layer("ip", "data", 4) +
                   'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }')
    assert layer_names(net)[0] == "input"
    assert net.inputs == ["data", "label"]
    assert net.blobs["data"].count == 6
    out = net.forward(data=np.ones(net.blobs["data"].shape),
                      label=np.zeros(net.blobs["label"].shape))
    assert out == {} and net.outputs == []
    assert net.forward_prefilled() > 0


def test_net_level_input_dims_must_come_in_fours():
    with pytest.raises(CaffeError, match="1 inputs need 4 input_dim values, got 2"):
        make_net('input: "data" input_dim: 2 input_dim: 3 ' + ip_layer("ip", "data"))


def test_input_layers_are_the_net_inputs():
    net = make_net(input_layer("a", (2, 3)) + input_layer("b", (2,)) + ip_layer("ip", "a"))
    assert net.inputs == ["a", "b"]
    assert net.outputs == ["b", "ip"]          # unread blobs, sorted as Caffe's std::set


# ---- splits, in-place, outputs ------------------------------------------------------------

SPLIT = input_layer("data", (2, 4)) + ip_layer("ip", "data", 3) + """
layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "s" }
layer { name: "tanh" type: "TanH" bottom: "ip" top: "t" }
"""


def test_a_top_read_twice_gets_a_split():
    param = net_passes.insert_splits(net_param(SPLIT))
    names = [layer.name for layer in param.layer]
    assert names == ["data", "ip", "ip_ip_0_split", "sig", "tanh"]
    split = param.layer[2]
    assert list(split.bottom) == ["ip"]
    assert list(split.top) == ["ip_ip_0_split_0", "ip_ip_0_split_1"]
    assert list(param.layer[3].bottom) == ["ip_ip_0_split_0"]
    assert list(param.layer[4].bottom) == ["ip_ip_0_split_1"]


def test_a_loss_weighted_top_read_elsewhere_keeps_its_loss_on_the_split():
    text = (input_layer("data", (2, 4)) + ip_layer("ip", "data", 3, extra="loss_weight: 2") +
            'layer { name: "sig" type: "Sigmoid" bottom: "ip" top: "s" loss_weight: 1 }')
    param = net_passes.insert_splits(net_param(text))
    ip, split, sig = param.layer[1], param.layer[2], param.layer[3]
    assert list(ip.loss_weight) == []
    assert list(split.loss_weight) == [2.0, 0.0]
    assert list(sig.bottom) == ["ip_ip_0_split_1"]
    net = caffe.Net(net_param(text), caffe.TRAIN)
    net.blobs["data"].data[...] = np.random.default_rng(0).uniform(-1, 1, (2, 4))
    loss = net.forward_prefilled()
    expected = 2 * net.blobs["ip"].data.sum() + net.blobs["s"].data.sum()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert net.blob_loss_weights["ip_ip_0_split_0"] == 2.0


def numeric_gradient(net, blob_name, step=1e-2):
    """d(net loss)/d(blob data) by central differences, one element at a time."""
    data = net.blobs[blob_name].data
    grad = np.zeros(data.shape)
    for index in np.ndindex(data.shape):
        original = data[index]
        data[index] = original + step
        plus = net.forward_prefilled()
        data[index] = original - step
        minus = net.forward_prefilled()
        data[index] = original
        grad[index] = (plus - minus) / (2 * step)
    return grad


def test_split_sums_the_gradients_of_its_readers():
    text = "force_backward: true " + SPLIT.replace('top: "s" }', 'top: "s" loss_weight: 1 }') \
        .replace('top: "t" }', 'top: "t" loss_weight: 0.5 }')
    net = make_net(text)
    net.blobs["data"].data[...] = np.random.default_rng(1).uniform(-1, 1, (2, 4))
    net.forward_prefilled()
    net.backward_from_to()
    analytic = net.blobs["data"].diff.copy()
    np.testing.assert_allclose(analytic, numeric_gradient(net, "data"), rtol=2e-3, atol=2e-4)


def test_in_place_layers_share_the_blob_and_stay_outputs():
    text = input_layer("data", (2, 4)) + ip_layer("ip", "data", 3) + \
        'layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }'
    net = make_net(text)
    assert net.outputs == ["ip"]                  # re-produced in place, so still an output
    assert net.layer_facts[2].tops[0] is net.layer_facts[2].bottoms[0] is net.blobs["ip"]
    net.blobs["data"].data[...] = np.random.default_rng(2).uniform(-1, 1, (2, 4))
    out = net.forward()
    assert (out["ip"] >= 0).all() and list(net.blobs) == ["data", "ip"]


def test_a_top_produced_twice_is_an_error():
    text = input_layer() + ip_layer("ip", "data") + \
        'layer { name: "again" type: "ReLU" bottom: "data" top: "ip" }'
    with pytest.raises(CaffeError, match="layer 'again'.*top blob 'ip' is produced by more"):
        make_net(text)


# ---- losses and the backward-need analysis ------------------------------------------------

LENET_LIKE = input_layer("data", (2, 4)) + input_layer("label", (2,)) + \
    ip_layer("ip1", "data", 5) + ip_layer("ip2", "ip1", 3) + """
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "acc" }
"""


def need(net):
    return {facts.layer.name: facts.need_backward for facts in net.layer_facts}


def bottom_needs(net):
    return {facts.layer.name: facts.bottom_need_backward for facts in net.layer_facts}


def test_loss_weight_defaults_and_backward_needs():
    net = make_net(LENET_LIKE)
    weights = {layer.name: layer.loss_weights for layer in net.layers}
    assert weights["loss"] == [1.0] and weights["acc"] == [0.0] and weights["ip1"] == [0.0]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["acc"] == 0.0
    assert need(net) == {"data": False, "label": False, "label_label_0_split": False,
                         "ip1": True, "ip2": True, "ip2_ip2_0_split": True, "loss": True,
                         "acc": False}
    by_name = bottom_needs(net)
    assert by_name["ip1"] == [False]                      # never into the data
    assert by_name["loss"] == [True, False]               # nor into the labels


def test_forward_backward_of_a_small_net_matches_finite_differences():
    net = make_net("force_backward: true " + LENET_LIKE)
    rng = np.random.default_rng(3)
    net.blobs["data"].data[...] = rng.uniform(-1, 1, (2, 4))
    net.blobs["label"].data[...] = [0, 2]
    net.forward_prefilled()
    net.backward_from_to()
    np.testing.assert_allclose(net.blobs["data"].diff, numeric_gradient(net, "data"),
                               rtol=2e-3, atol=2e-4)


def test_force_backward_reaches_data_but_not_labels_or_accuracy():
    net = make_net("force_backward: true " + LENET_LIKE)
    by_name = bottom_needs(net)
    assert by_name["ip1"] == [True]
    assert by_name["loss"] == [True, False] and by_name["acc"] == [False, False]
    net.blobs["label"].data[...] = [1, 0]
    net.forward()
    diffs = net.backward()
    assert set(diffs) == {"data", "label"} and np.abs(diffs["data"]).sum() > 0


def test_a_layer_that_feeds_no_loss_gets_no_backward():
    net = make_net(LENET_LIKE + ip_layer("side", "ip1", 2))
    assert need(net)["side"] is False
    assert "side" in net.outputs


def test_propagate_down_false_stops_at_that_bottom():
    text = LENET_LIKE.replace('bottom: "ip1" top: "ip2"',
                              'bottom: "ip1" top: "ip2" propagate_down: false')
    net = make_net(text)
    by_name = bottom_needs(net)
    assert by_name["ip2"] == [False]
    assert need(net)["ip2"] is True                  # its own weights still learn
    assert need(net)["ip1"] is False                 # nothing reaches it any more
    net.blobs["label"].data[...] = [0, 1]
    net.forward()
    net.clear_param_diffs()
    net.backward()
    assert np.abs(net.params["ip2"][0].diff).sum() > 0
    assert np.abs(net.params["ip1"][0].diff).sum() == 0


def test_propagate_down_true_overrides_the_data_rule_as_in_caffe():
    text = LENET_LIKE.replace('bottom: "data" top: "ip1"',
                              'bottom: "data" top: "ip1" propagate_down: true')
    net = make_net(text)
    assert bottom_needs(net)["ip1"] == [True]


def test_propagate_down_must_cover_every_bottom():
    text = LENET_LIKE.replace('top: "acc" }', 'top: "acc" propagate_down: false }')
    with pytest.raises(CaffeError, match="layer 'acc'.*propagate_down has 1 entries for 2"):
        make_net(text)


def test_lr_mult_zero_freezes_a_layer_and_mults_are_recorded():
    frozen = 'param { lr_mult: 0 } param { lr_mult: 0 } '
    mults = 'param { lr_mult: 1 decay_mult: 2 } param { lr_mult: 2 decay_mult: 0 } '
    text = LENET_LIKE.replace('top: "ip1" ', 'top: "ip1" ' + frozen) \
        .replace('top: "ip2" ', 'top: "ip2" ' + mults)
    net = make_net(text)
    assert [p.lr_mult for p in net.learnables] == [0.0, 0.0, 1.0, 2.0]
    assert [p.decay_mult for p in net.learnables] == [1.0, 1.0, 2.0, 0.0]
    assert [p.explicit for p in net.learnables] == \
        [{"lr_mult"}, {"lr_mult"}, {"lr_mult", "decay_mult"}, {"lr_mult", "decay_mult"}]
    assert need(net)["ip1"] is False
    assert net.layer_dict["ip1"].param_propagate_down == [False, False]


def test_too_many_param_specs_is_an_error():
    text = LENET_LIKE.replace('top: "ip1" ', 'top: "ip1" param {} param {} param {} ')
    with pytest.raises(CaffeError, match="layer 'ip1'.*3 param specs but only 2"):
        make_net(text)


# ---- parameter sharing --------------------------------------------------------------------

def shared_net_text(b_dims=(2, 3), b_spec='param { name: "w" } param { name: "bias" }'):
    """Two InnerProducts sharing weight "w" and bias "bias", each under a sigmoid loss."""
    return (input_layer("a", (2, 3)) + input_layer("b", b_dims) +
            ip_layer("ip_a", "a", 2,
                     extra='param { name: "w" } param { name: "bias" lr_mult: 2 }') +
            ip_layer("ip_b", "b", 2, extra=b_spec) +
            'layer { name: "la" type: "Sigmoid" bottom: "ip_a" top: "la" loss_weight: 1 }'
            'layer { name: "lb" type: "Sigmoid" bottom: "ip_b" top: "lb" loss_weight: 1 }')


def test_shared_params_share_values_and_accumulate_gradients():
    net = make_net(shared_net_text())
    wa, wb = net.params["ip_a"][0], net.params["ip_b"][0]
    wa.data[...] = 0.5
    np.testing.assert_array_equal(wb.data, 0.5)
    params = [p for facts in net.layer_facts for p in facts.params]
    assert len(net.learnable_params) == 2
    assert [p.learnable for p in params] == net.learnables * 2
    assert [p.owns_storage for p in params] == [True, True, False, False]
    assert [p.display_name for p in params] == ["w", "bias", "w", "bias"]
    assert [p.lr_mult for p in net.learnables] == [1.0, 2.0]
    rng = np.random.default_rng(4)
    net.blobs["a"].data[...] = rng.uniform(-1, 1, (2, 3))
    net.blobs["b"].data[...] = rng.uniform(-1, 1, (2, 3))
    net.forward()
    net.clear_param_diffs()
    net.backward()
    sa = net.blobs["la"].data
    sb = net.blobs["lb"].data
    grad_a = (sa * (1 - sa)).T @ net.blobs["a"].data
    grad_b = (sb * (1 - sb)).T @ net.blobs["b"].data
    np.testing.assert_allclose(wa.diff, grad_a + grad_b, rtol=1e-5)
    assert wb.diff is not None and np.shares_memory(wa.diff, wb.diff)


def test_sharing_needs_matching_shapes_unless_permissive():
    shapes = r"layer 'ip_b'.*cannot share param 'w'.*\(2, 6\).*\(2, 3\)"
    with pytest.raises(CaffeError, match=shapes):
        make_net(shared_net_text(b_dims=(2, 6)))
    permissive = 'param { name: "w" share_mode: PERMISSIVE } param { name: "bias" }'
    with pytest.raises(CaffeError, match="cannot share param 'w'"):
        make_net(shared_net_text(b_dims=(2, 6), b_spec=permissive))
    net = make_net(shared_net_text(b_dims=(2, 1, 3), b_spec=permissive))   # same count: fine
    assert net.params["ip_b"][0].shape == (2, 3)


def test_conflicting_lr_mult_on_a_shared_param_is_an_error():
    text = shared_net_text(b_spec='param { name: "w" } param { name: "bias" lr_mult: 3 }')
    with pytest.raises(CaffeError, match="layer 'ip_b'.*param 'bias' has conflicting lr_mult"):
        make_net(text)


# ---- reshaping and the pycaffe API --------------------------------------------------------

CONV_NET = 'force_backward: true ' + input_layer("data", (2, 1, 6, 6)) + f"""
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param {{ num_output: 2 kernel_size: 3 pad: 1 {FILL} }} }}
layer {{ name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "prob" type: "Softmax" bottom: "pool" top: "prob" }}
"""


def test_reshape_follows_a_new_input_shape():
    net = make_net(CONV_NET, caffe.TEST)
    net.blobs["data"].reshape(3, 1, 10, 8)
    net.reshape()
    assert net.blobs["pool"].shape == (3, 2, 5, 4)
    out = net.forward(data=np.ones((5, 1, 4, 4)))            # forward(**inputs) reshapes too
    assert out["prob"].shape == (5, 2, 2, 2)
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1, rtol=1e-6)


def test_forward_start_end_and_blobs():
    net = make_net(CONV_NET, caffe.TEST)
    x = np.random.default_rng(5).uniform(-1, 1, (2, 1, 6, 6))
    out = net.forward(end="conv", data=x)
    assert list(out) == ["conv"]
    conv = out["conv"].copy()
    net.blobs["conv"].data[...] = 0
    out = net.forward(start="pool", blobs=["conv"])
    assert set(out) == {"prob", "conv"}
    np.testing.assert_array_equal(out["conv"], 0)             # start skipped the convolution
    np.testing.assert_array_equal(net.forward(data=x, blobs=["conv"])["conv"], conv)
    with pytest.raises(CaffeError, match="not among the net inputs"):
        net.forward(pool=x)
    with pytest.raises(CaffeError, match="no layer named 'nope'"):
        net.forward(start="nope")


def test_backward_with_top_diffs_and_end():
    net = make_net(CONV_NET, caffe.TEST)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 1, 6, 6))
    net.forward(data=x)
    diffs = net.backward(prob=np.ones(net.blobs["prob"].shape))
    assert list(diffs) == ["data"]
    np.testing.assert_allclose(diffs["data"], 0, atol=1e-6)   # softmax of a constant diff
    grad = np.random.default_rng(7).standard_normal(net.blobs["prob"].shape)
    out = net.backward(end="pool", diffs=["prob"], prob=grad)
    assert set(out) == {"conv", "prob"}
    np.testing.assert_array_equal(out["prob"], grad.astype(np.float32))
    with pytest.raises(CaffeError, match="not among the net outputs"):
        net.backward(conv=grad)


def test_pycaffe_attributes():
    net = make_net(LENET_LIKE)
    assert list(net.top_names) == layer_names(net)
    assert net.bottom_names["loss"] == ["ip2_ip2_0_split_0", "label_label_0_split_0"]
    assert list(net.params) == ["ip1", "ip2"]
    assert net.params["ip1"][0].shape == (5, 4) and net.params["ip1"][1].shape == (5,)
    assert net.layer_dict["ip1"].type == "InnerProduct"
    assert net._layer_names == layer_names(net)
    assert net._blob_names == list(net.blobs)


def test_forward_all_batches_pads_and_trims():
    net = make_net(CONV_NET, caffe.TEST)
    x = np.random.default_rng(8).uniform(-1, 1, (5, 1, 6, 6))
    out = net.forward_all(data=x, blobs=["pool"])
    assert out["prob"].shape == (5, 2, 3, 3) and out["pool"].shape == (5, 2, 3, 3)
    assert net.blobs["data"].shape == (2, 1, 6, 6)              # the net keeps its batch
    np.testing.assert_allclose(out["prob"][4:], net.forward(data=np.concatenate(
        [x[4:], np.zeros((1, 1, 6, 6))]))["prob"][:1], rtol=1e-6)


def test_forward_backward_all_returns_outputs_and_input_diffs():
    net = make_net(CONV_NET, caffe.TEST)
    x = np.random.default_rng(9).uniform(-1, 1, (3, 1, 6, 6))
    grad = np.random.default_rng(10).standard_normal((3, 2, 3, 3))
    outs, diffs = net.forward_backward_all(data=x, prob=grad)
    assert outs["prob"].shape == (3, 2, 3, 3) and diffs["data"].shape == (3, 1, 6, 6)
    net.forward(data=np.concatenate([x[2:], np.zeros((1, 1, 6, 6))]))
    expected = net.backward(prob=np.concatenate([grad[2:], np.zeros((1, 2, 3, 3))]))["data"]
    np.testing.assert_allclose(diffs["data"][2:], expected[:1], rtol=1e-5, atol=1e-7)
