"""An Eltwise SUM and the ReLU in place on its top run as one chain (pycaffe_mct/fusion.py):
which layers become one, and that every blob, diff and parameter gradient holds the bits the
two layers leave when run one by one, on both executors."""
import numpy as np
import pytest

from pycaffe_mct import fusion
from pycaffe_mct.cg import scheduler
from test_diff_sharing import BLOCK, block_net
from test_fusion import same_weights
from test_net import make_net


def spans(net):
    names = list(net._layer_names)
    return [(type(chain).__name__, names[chain.first], names[chain.last])
            for chain in net._chains.values()]


def test_a_sum_and_its_in_place_relu_are_one_chain():
    assert spans(block_net()) == [("SumReLUChain", "sum", "relu")]


RELU_ELSEWHERE = [('bottom: "sum" top: "sum" }', 'bottom: "sum" top: "r" }'),
                  ('bottom: "sum" top: "ip"', 'bottom: "r" top: "ip"')]


@pytest.mark.parametrize("edits", [
    RELU_ELSEWHERE,                                               # the ReLU not in place
    [("eltwise_param { COEFFS }", "eltwise_param { operation: PROD }")],
    [("eltwise_param { COEFFS }", "eltwise_param { operation: MAX }")],
], ids=["relu-not-in-place", "prod", "max"])
def test_no_chain_without_an_in_place_relu_after_a_sum(edits):
    text = BLOCK
    for old, new in edits:
        text = text.replace(old, new)
    assert spans(make_net(text.replace("COEFFS", "").replace("BRANCH_LAYER", ""))) == []


def run(net, whole):
    """Forward and backward, the chain whole or its two layers one by one (a pass that stops
    between them runs them singly); every value a user can read afterwards."""
    relu = list(net._layer_names).index("relu")
    net.clear_param_diffs()
    if whole:
        net.forward_backward()
    else:
        net.forward_from_to(0, relu - 1)
        net.forward_from_to(relu)
        net.backward_from_to(None, relu)
        net.backward_from_to(relu - 1, 0)
    return ([blob.data.copy() for blob in net.blobs.values()]
            + [blob.diff.copy() for blob in net.blobs.values()]
            + [blob.diff.copy() for layer in net.layers for blob in layer.blobs])


@pytest.mark.parametrize("mode", ["fast", "literal"])
@pytest.mark.parametrize("coeffs, slope", [("", 0.0), ("coeff: 1 coeff: -0.5", 0.1)])
def test_the_chain_leaves_the_bits_the_layers_leave(monkeypatch, mode, coeffs, slope):
    calls = []
    for name in ("sum_relu_into", "relu_backward_copies"):
        real = getattr(fusion.ops, name)
        monkeypatch.setattr(fusion.ops, name, lambda *a, real=real: (calls.append(1), real(*a)))
    text = BLOCK.replace('bottom: "sum" top: "sum" }',
                         f'bottom: "sum" top: "sum" relu_param {{ negative_slope: {slope} }} }}')
    with scheduler.execution(mode):
        nets = same_weights(*[make_net(text.replace("COEFFS", coeffs).replace(
            "BRANCH_LAYER", "")) for _ in range(2)])
        for net in nets:
            rng = np.random.default_rng(3)
            net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
            net.blobs["target"].data[...] = rng.standard_normal((2, 3))
        layered, fused = run(nets[0], whole=False), run(nets[1], whole=True)
    assert len(calls) == 2, "the chain did not run whole"
    assert len(fused) == len(layered)
    for a, b in zip(fused, layered):
        np.testing.assert_array_equal(a, b)
