"""An Eltwise SUM, the ReLU in place on its top and the Split that hands it on run as one
chain (pycaffe_mct/fusion.py): which layers become one, and that every blob, diff and
parameter gradient holds the bits the layers leave when run one by one, on both executors."""
import numpy as np
import pytest

from pycaffe_mct import fusion
from pycaffe_mct.cg import scheduler
from test_diff_sharing import BLOCK, block_net
from test_fusion import same_weights
from test_net import make_net


# Two identity blocks: the first one's output is read by the second's branch and sum (a Split).
TWO_BLOCKS = BLOCK.replace('layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"', """
layer { name: "branch2" type: "Convolution" bottom: "sum" top: "branch2"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sum2" type: "Eltwise" bottom: "branch2" bottom: "sum" top: "sum2"
        eltwise_param { COEFFS } }
layer { name: "relu2" type: "ReLU" bottom: "sum2" top: "sum2" }
layer { name: "ip" type: "InnerProduct" bottom: "sum2" top: "ip\"""")


def spans(net):
    names = list(net._layer_names)
    return [(type(chain).__name__, names[chain.first], names[chain.last])
            for chain in net._chains.values()]


def test_a_sum_its_in_place_relu_and_their_split_are_one_chain():
    assert spans(block_net()) == [("SumReLUChain", "sum", "relu")]
    text = TWO_BLOCKS.replace("COEFFS", "").replace("BRANCH_LAYER", "")
    assert spans(make_net(text)) == [("SumReLUChain", "sum", "sum_relu_0_split"),
                                     ("SumReLUChain", "sum2", "relu2")]


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
    """Forward and backward, the chains whole or their layers one by one (a pass that stops
    inside a chain runs its layers singly); every value a user can read afterwards."""
    net.clear_param_diffs()
    if whole:
        net.forward_backward()
    else:
        cuts = sorted(chain.first + 1 for chain in net._chains.values())
        for lo, hi in zip([0] + cuts, cuts + [len(net.layers)]):
            net.forward_from_to(lo, hi - 1)
        for lo, hi in reversed(list(zip([0] + cuts, cuts + [len(net.layers)]))):
            net.backward_from_to(hi - 1, lo)
    return ([blob.data.copy() for blob in net.blobs.values()]
            + [blob.diff.copy() for blob in net.blobs.values()]
            + [blob.diff.copy() for layer in net.layers for blob in layer.blobs])


@pytest.mark.parametrize("mode", ["fast", "literal"])
@pytest.mark.parametrize("blocks", [BLOCK, TWO_BLOCKS], ids=["one-block", "two-blocks"])
@pytest.mark.parametrize("coeffs, slope", [("", 0.0), ("coeff: 1 coeff: -0.5", 0.1)])
def test_the_chain_leaves_the_bits_the_layers_leave(monkeypatch, mode, blocks, coeffs, slope):
    calls = []
    for name in ("sum_relu_into", "relu_backward_copies"):
        real = getattr(fusion.ops, name)
        monkeypatch.setattr(fusion.ops, name, lambda *a, real=real: (calls.append(1), real(*a)))
    text = blocks.replace('top: "sum" }', f'top: "sum" relu_param {{ negative_slope: {slope} }} }}')
    with scheduler.execution(mode):
        nets = same_weights(*[make_net(text.replace("COEFFS", coeffs).replace(
            "BRANCH_LAYER", "")) for _ in range(2)])
        for net in nets:
            rng = np.random.default_rng(3)
            net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
            net.blobs["target"].data[...] = rng.standard_normal((2, 3))
        layered, fused = run(nets[0], whole=False), run(nets[1], whole=True)
    assert len(calls) == 2 * len(nets[1]._chains), "the chains did not run whole"
    assert len(fused) == len(layered)
    for a, b in zip(fused, layered):
        np.testing.assert_array_equal(a, b)
