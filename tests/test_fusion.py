"""BatchNorm -> Scale [-> ReLU] in place run as one chain (pycaffe_mct/fusion.py): the same
blob values, diffs, parameter gradients and running statistics as layer by layer, on both
executors, and gradients that match finite differences."""
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct.cg import scheduler
from pycaffe_mct.rng import set_random_seed
from test_net import make_net, numeric_gradient

CHAIN = """
force_backward: true
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "SCALED"
        scale_param { bias_term: true filler { type: "uniform" min: 0.5 max: 1.5 }
                      bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }
RELU
layer { name: "ip" type: "InnerProduct" bottom: "SCALED" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""
RELU = 'layer { name: "relu" type: "ReLU" bottom: "SCALED" top: "RELU_TOP" relu_param { %s } }'


def chain_net(relu="negative_slope: 0.1", phase=caffe.TRAIN, scaled="conv", relu_top="conv"):
    """The test net; ``relu`` None leaves the ReLU out, ``scaled``/``relu_top`` name the tops
    of Scale and ReLU (in place by default)."""
    text = CHAIN.replace("RELU", RELU % relu if relu is not None else "")
    net = make_net(text.replace("SCALED", scaled).replace("RELU_TOP", relu_top), phase)
    rng = np.random.default_rng(5)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["target"].data[...] = rng.standard_normal((2, 3))
    return net


def same_weights(*nets):
    for layer in nets[0].layers:
        for net in nets[1:]:
            for source, blob in zip(layer.blobs, net.layer_dict[layer.name].blobs):
                blob.data[...] = source.data
    return nets


def run(net, whole_forward, whole_backward):
    """Forward and backward, the chain as one (whole) or layer by layer (stopping after the
    BatchNorm, which runs a chain's layers singly); the values a user can read."""
    bn = list(net._layer_names).index("bn")
    if whole_forward:
        net.forward_prefilled()
    else:
        net.forward_from_to(0, bn)
        net.forward_from_to(bn + 1)
    net.clear_param_diffs()
    if whole_backward:
        net.backward_from_to()
    else:
        net.backward_from_to(None, bn + 1)
        net.backward_from_to(bn, 0)
    layers = net.layer_dict
    return ([net.blobs[name].data.copy() for name in ("conv", "ip")]
            + [net.blobs[name].diff.copy() for name in ("conv", "data")]
            + [blob.diff.copy() for blob in layers["scale"].blobs]
            + [blob.data.copy() for blob in layers["bn"].blobs])


@pytest.mark.parametrize("mode", ["fast", "literal"])
@pytest.mark.parametrize("relu", ["negative_slope: 0.1", "", None])
def test_chain_matches_layer_by_layer(mode, relu):
    with scheduler.execution(mode):
        nets = same_weights(*[chain_net(relu) for _ in range(4)])
        single, *mixed = [run(net, *ways) for net, ways in
                          zip(nets, [(False, False), (True, True), (True, False), (False, True)])]
    for values in mixed:
        for fused, layered in zip(values, single):
            np.testing.assert_allclose(fused, layered, rtol=2e-5, atol=2e-6)
        # Forward rounds where the layers round: the same bits (outputs, running statistics).
        for fused, layered in zip(values[:2] + values[-3:], single[:2] + single[-3:]):
            np.testing.assert_array_equal(fused, layered)


def test_chain_in_test_phase_uses_stored_statistics():
    nets = same_weights(*[chain_net(phase=caffe.TEST) for _ in range(2)])
    for net in nets:
        bn = net.layer_dict["bn"].blobs
        bn[0].data[...], bn[1].data[...], bn[2].data[...] = [0.1, -0.2, 0.3, 0.0], 2.0, 2.0
    nets[0].forward_prefilled()
    bn = list(nets[1]._layer_names).index("bn")
    nets[1].forward_from_to(0, bn)
    nets[1].forward_from_to(bn + 1)
    np.testing.assert_allclose(nets[0].blobs["ip"].data, nets[1].blobs["ip"].data, rtol=1e-6)


def test_forward_ending_inside_the_chain_leaves_what_caffe_would():
    net = chain_net()
    bn = list(net._layer_names).index("bn")
    net.forward_from_to(0, bn - 1)
    x = net.blobs["conv"].data.astype(np.float64)
    net.forward_from_to(bn, bn)                 # the blob now holds BatchNorm's output
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(net.blobs["conv"].data, (x - mean) / np.sqrt(var + 1e-5),
                               rtol=1e-4, atol=1e-5)


def test_chain_gradient_matches_finite_differences():
    # Without the ReLU, whose kinks finite differences straddle; the chain's ReLU part is
    # checked against the ReLU layer's own gradient above.  Seeded: with 1 in ~40 of the
    # unseeded generator's weights a central difference misses by more than the tolerance.
    set_random_seed(0)
    net = chain_net(relu=None)
    net.forward_prefilled()
    net.backward_from_to()
    analytic = net.blobs["data"].diff.copy()
    np.testing.assert_allclose(analytic, numeric_gradient(net, "data"), rtol=5e-3, atol=5e-4)


def chain_spans(net):
    names = list(net._layer_names)
    return [(names[chain.first], names[chain.last]) for chain in net._chains.values()]


def test_only_in_place_runs_of_the_three_layers_are_chains():
    assert chain_spans(chain_net()) == [("bn", "relu")]
    assert chain_spans(chain_net(relu=None)) == [("bn", "scale")]
    assert chain_spans(chain_net(relu_top="r")) == [("bn", "scale")]
    assert chain_spans(chain_net(scaled="s", relu_top="s")) == []



def kept(net):
    return [chain.keeps_normalized for chain in net._chains.values()]


def deploy_chain_net():
    """The test net without its loss: nothing runs backward."""
    text = CHAIN.replace("force_backward: true", "").replace("RELU", RELU % "")
    text = text[:text.index('layer { name: "loss"')]
    net = make_net(text.replace("SCALED", "conv").replace("RELU_TOP", "conv"), caffe.TEST)
    net.blobs["data"].data[...] = np.random.default_rng(5).standard_normal(
        net.blobs["data"].shape)
    return net


@pytest.mark.parametrize("mode", ["fast", "literal"])
def test_a_chain_no_backward_reads_from_writes_no_normalised_copy(mode):
    fused, layered = same_weights(deploy_chain_net(), deploy_chain_net())
    assert kept(fused) == [False]
    bn = list(layered._layer_names).index("bn")
    with scheduler.execution(mode):
        fused.forward_prefilled()
        layered.forward_from_to(0, bn)          # layer by layer: Scale keeps its input
        layered.forward_from_to(bn + 1)
    np.testing.assert_array_equal(fused.blobs["ip"].data, layered.blobs["ip"].data)
    assert not fused.layer_dict["bn"].normalized.data.any()
    assert layered.layer_dict["bn"].normalized.data.any()


def frozen_scale_text(scale_lr):
    """The test net (ReLU in place, no forced backward) with the Scale's factor at lr_mult
    ``scale_lr`` and its bias learned."""
    text = CHAIN.replace("force_backward: true", "").replace("RELU", RELU % "")
    text = text.replace("SCALED", "conv").replace("RELU_TOP", "conv")
    return text.replace('top: "conv"\n        scale_param',
                        f'top: "conv" param {{ lr_mult: {scale_lr} }} param {{ lr_mult: 1 }}\n'
                        f'        scale_param')


@pytest.mark.parametrize("phase, scale_lr, expected", [
    (caffe.TRAIN, 0, [True]),                    # BatchNorm's batch statistics need it
    (caffe.TEST, 1, [True]),                     # the Scale's factor gradient needs it
    (caffe.TEST, 0, [False]),                    # frozen: dx and the bias need only the output
])
def test_the_normalised_copy_is_kept_where_a_backward_reads_it(phase, scale_lr, expected):
    net = make_net(frozen_scale_text(scale_lr), phase)
    assert kept(net) == expected
    assert net.layer_dict["scale"].param_propagate_down == [bool(scale_lr), True]


@pytest.mark.parametrize("mode", ["fast", "literal"])
def test_a_frozen_chain_without_the_copy_back_propagates_as_layer_by_layer(mode):
    with scheduler.execution(mode):
        nets = same_weights(*[make_net(frozen_scale_text(0), caffe.TEST) for _ in range(2)])
        for net in nets:
            rng = np.random.default_rng(2)
            net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
            net.blobs["target"].data[...] = rng.standard_normal((2, 3))
        assert kept(nets[0]) == [False]
        fused, layered = (run(net, *ways)
                          for net, ways in zip(nets, [(True, True), (False, False)]))
        for a, b in zip(fused, layered):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert not nets[0].layer_dict["bn"].normalized.data.any()
