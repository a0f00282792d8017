"""Split, Flatten, Reshape, Silence: shapes, shared storage, gradients."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive


def test_split_copies_forward_and_sums_backward():
    x = uniform(2, 3, seed=40)
    layer, bottoms, tops = run_layer('type: "Split"', x, tops=3)
    for top in tops:
        np.testing.assert_array_equal(top.data, x.astype(np.float32))
    for k, top in enumerate(tops):
        top.diff[...] = k + 1
    layer.backward(tops, [True], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, 6)
    check_gradient_exhaustive(make_layer('type: "Split"'), blobs_from(x), empty_tops(2))


def test_split_refuses_in_place():
    blob = blobs_from(np.ones(3))[0]
    with pytest.raises(NetError, match="in-place"):
        make_layer('name: "s" type: "Split"').setup([blob], [blob])


@pytest.mark.parametrize("options,shape,expected", [
    ("", (2, 3, 4, 5), (2, 60)),
    ("flatten_param { axis: 2 }", (2, 3, 4, 5), (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 3, 4, 5), (2, 12, 5)),
    ("flatten_param { axis: 0 end_axis: -2 }", (2, 3, 4, 5), (24, 5)),
])
def test_flatten(options, shape, expected):
    x = uniform(*shape, seed=41)
    layer, bottoms, tops = run_layer(f'type: "Flatten" {options}', x)
    assert tops[0].shape == expected
    np.testing.assert_array_equal(tops[0].data, x.reshape(expected).astype(np.float32))
    check_gradient_exhaustive(make_layer(f'type: "Flatten" {options}'), blobs_from(x),
                              empty_tops(1))


@pytest.mark.parametrize("options,shape,expected", [
    ("shape { dim: 0 dim: -1 }", (2, 3, 4), (2, 12)),
    ("shape { dim: 6 dim: 2 dim: 2 }", (2, 3, 4), (6, 2, 2)),
    ("shape { dim: 0 dim: 0 dim: 2 dim: -1 }", (2, 3, 4), (2, 3, 2, 2)),
    ("shape { dim: -1 } axis: 1", (2, 3, 4), (2, 12)),
    ("shape { dim: 2 dim: 2 } axis: 2", (2, 3, 4), (2, 3, 2, 2)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 3), (2, 1, 3)),
    ("shape { dim: 1 dim: 1 } axis: -1 num_axes: 0", (2, 3), (2, 3, 1, 1)),
    ("shape { dim: -1 dim: 1 } axis: 0 num_axes: 2", (2, 3, 4), (6, 1, 4)),
])
def test_reshape(options, shape, expected):
    x = uniform(*shape, seed=42)
    layer, bottoms, tops = run_layer(f'type: "Reshape" reshape_param {{ {options} }}', x)
    assert tops[0].shape == expected
    np.testing.assert_array_equal(tops[0].data.ravel(), x.ravel().astype(np.float32))
    tops[0].diff[...] = 7
    np.testing.assert_array_equal(bottoms[0].diff, 7)      # diff shared, as in Caffe


@pytest.mark.parametrize("options,message", [
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 5 dim: -1 }", "cannot infer -1"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 3"),
    ("shape { dim: 4 } axis: 4", "axis 4 out of range"),
    ("shape { dim: 5 }", "does not fit"),
])
def test_reshape_errors(options, message):
    with pytest.raises(NetError, match=f"layer 'r'.*{message}"):
        run_layer(f'name: "r" type: "Reshape" reshape_param {{ {options} }}', uniform(2, 3, 4))


def test_view_layers_follow_a_reshaped_bottom():
    layer, bottoms, tops = run_layer('type: "Flatten"', uniform(2, 3, 2))
    bottoms[0].reshape(4, 3, 2)
    bottoms[0].data[...] = uniform(4, 3, 2, seed=43)
    layer.forward(bottoms, tops)
    np.testing.assert_array_equal(tops[0].data, bottoms[0].data.reshape(4, 6))


def test_silence_has_no_tops_and_zero_gradient():
    layer, bottoms, tops = run_layer('type: "Silence"', uniform(2, 2), uniform(3), tops=0)
    for blob in bottoms:
        blob.diff[...] = 5
    layer.backward([], [True, False], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, 0)
    np.testing.assert_array_equal(bottoms[1].diff, 5)
