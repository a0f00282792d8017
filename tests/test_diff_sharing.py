"""An Eltwise SUM bottom whose diff is only ever a copy of the top's shares its storage
(pycaffe_mct/diff_sharing.py): which bottoms do, and that every blob still holds what
Caffe's backward leaves in it."""
import numpy as np
import pytest

from pycaffe_mct import diff_sharing
from test_fusion import same_weights
from test_net import make_net

# An identity block: "x" is read by the branch and (through its Split) by the sum.
BLOCK = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "x" type: "Convolution" bottom: "data" top: "x"
        convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "branch" type: "Convolution" bottom: "x" top: "branch"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
BRANCH_LAYER
layer { name: "sum" type: "Eltwise" bottom: "branch" bottom: "x" top: "sum" eltwise_param { COEFFS } }
layer { name: "relu" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""
SHORTCUT = "x_x_0_split_1"      # the Split top that goes straight to the sum
IN_PLACE_SCALE = ('layer { name: "scale" type: "Scale" bottom: "branch" top: "branch" '
                  'scale_param { filler { type: "constant" value: 2 } } }')


def block_net(coeffs="", branch_layer=""):
    net = make_net(BLOCK.replace("COEFFS", coeffs).replace("BRANCH_LAYER", branch_layer))
    rng = np.random.default_rng(3)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["target"].data[...] = rng.standard_normal((2, 3))
    return net


def shared_pairs(net):
    return {(name, other) for name, blob in net.blobs.items()
            for other, top in net.blobs.items() if name != other and blob.shares_diff_with(top)
            and name < other}


def test_the_bottoms_of_an_unscaled_sum_share_its_diff():
    assert shared_pairs(block_net()) == {("branch", "sum"), ("branch", SHORTCUT),
                                         ("sum", SHORTCUT)}


@pytest.mark.parametrize("coeffs, branch_layer, expected", [
    ("coeff: 1 coeff: 2", "", {("branch", "sum")}),         # the shortcut's copy is scaled
    ("", IN_PLACE_SCALE, {("sum", SHORTCUT)}),              # the branch's Scale rewrites it
    ("coeff: 2 coeff: 1", IN_PLACE_SCALE, {("sum", SHORTCUT)}),
    ("operation: PROD", "", set()),
    ("operation: MAX", "", set()),
])
def test_only_unscaled_sum_bottoms_nothing_else_writes_share(coeffs, branch_layer, expected):
    assert shared_pairs(block_net(coeffs, branch_layer)) == expected


def test_a_bottom_that_needs_no_backward_keeps_its_own_diff():
    text = BLOCK.replace("COEFFS", "").replace("BRANCH_LAYER", "").replace(
        'bottom: "x" top: "sum"', 'bottom: "x" top: "sum" propagate_down: true propagate_down: false')
    assert shared_pairs(make_net(text.replace("force_backward: true", ""))) == {("branch", "sum")}


@pytest.mark.parametrize("branch_layer", ["", IN_PLACE_SCALE], ids=["plain", "scaled-branch"])
def test_every_blob_holds_what_it_holds_without_sharing(monkeypatch, branch_layer):
    shared = block_net(branch_layer=branch_layer)
    monkeypatch.setattr(diff_sharing, "share_copied_diffs", lambda layer_facts: [])
    unshared = block_net(branch_layer=branch_layer)
    assert not shared_pairs(unshared)
    same_weights(shared, unshared)
    for _ in range(2):                      # the second pass starts from the first's diffs
        for net in (shared, unshared):
            net.clear_param_diffs()
            net.forward_backward()
        for name in shared.blobs:
            np.testing.assert_array_equal(shared.blobs[name].diff, unshared.blobs[name].diff)
            np.testing.assert_array_equal(shared.blobs[name].data, unshared.blobs[name].data)
        for layer in shared.layers:
            for blob, other in zip(layer.blobs, unshared.layer_dict[layer.name].blobs):
                np.testing.assert_array_equal(blob.diff, other.diff)


def test_a_bottom_viewing_another_blobs_diff_keeps_it():
    # A Reshape top is a view of its bottom's storage: sharing it would cut the gradient
    # off from the bottom.
    text = BLOCK.replace("COEFFS", "").replace("BRANCH_LAYER", "").replace(
        'bottom: "branch" bottom: "x" top: "sum"', 'bottom: "view" bottom: "x" top: "sum"')
    view = ('layer { name: "view" type: "Reshape" bottom: "branch" top: "view" '
            'reshape_param { shape { dim: 0 dim: -1 dim: 4 dim: 4 } } }\n')
    text = text.replace('layer { name: "sum"', view + 'layer { name: "sum"')
    net = make_net(text)
    assert shared_pairs(net) == {("branch", "view"), ("sum", SHORTCUT)}
    net.forward_backward()
    np.testing.assert_array_equal(net.blobs["branch"].diff, net.blobs["sum"].diff)
