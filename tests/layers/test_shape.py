"""Concat, Slice, Crop, Tile against numpy; gradients by finite differences."""
import numpy as np
import pytest

from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.errors import NetError


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_forward_and_gradient(axis):
    a, b = random(2, 3, 2), random(2, 3, 2, seed=1)
    b = np.concatenate([b, b], axis=axis)
    text = f'type: "Concat" concat_param {{ axis: {axis} }}'
    _, _, tops = forward(text, a, b)
    assert_close(tops[0].data, np.concatenate([a, b], axis=axis))
    check_gradient(text, a, b)


def test_concat_shapes_must_agree_off_the_axis():
    with pytest.raises(NetError, match=r"layer 'cat'.*bottom 1 has shape \(2, 3, 5\), bottom 0 "
                                       r"has \(2, 3, 4\).*concat axis 1"):
        forward('name: "cat" type: "Concat"', random(2, 3, 4), random(2, 3, 5))


def test_concat_axis_out_of_range():
    with pytest.raises(NetError, match=r"layer 'cat'.*axis 4 out of range for bottom shape "
                                       r"\(2, 3\)"):
        forward('name: "cat" type: "Concat" concat_param { axis: 4 }', random(2, 3), random(2, 3))


@pytest.mark.parametrize("text,sizes", [("slice_point: 1 slice_point: 4", [1, 3, 2]),
                                        ("", [2, 2, 2])])
def test_slice_forward_and_gradient(text, sizes):
    x = random(2, 6, 3)
    layer_text = f'type: "Slice" slice_param {{ axis: 1 {text} }}'
    _, _, tops = forward(layer_text, x, tops=3)
    for top, piece in zip(tops, np.split(x, np.cumsum(sizes)[:-1], axis=1)):
        assert_close(top.data, piece)
    check_gradient(layer_text, x, tops=3)


def test_slice_uneven_split_rejected():
    with pytest.raises(NetError, match=r"does not split evenly into 4 tops"):
        forward('type: "Slice"', random(2, 6), tops=4)


@pytest.mark.parametrize("text,offsets", [("axis: 2 offset: 1", (0, 0, 1, 1)),
                                          ("axis: 1 offset: 0 offset: 2 offset: 1", (0, 0, 2, 1)),
                                          ("", (0, 0, 0, 0))])
def test_crop_forward_and_gradient(text, offsets):
    x, reference = random(2, 3, 5, 4), np.zeros((2, 2, 3, 2))
    if "axis: 2" in text or not text:
        reference = np.zeros((2, 3, 3, 2))
    layer_text = f'type: "Crop" crop_param {{ {text} }}'
    _, _, tops = forward(layer_text, x, reference)
    window = tuple(slice(o, o + n) for o, n in zip(offsets, reference.shape))
    assert_close(tops[0].data, x[window])
    check_gradient(layer_text, x, reference, check_bottoms=[0])


def test_crop_too_large_names_shapes():
    with pytest.raises(NetError, match=r"layer 'crop'.*size 4 at offset 2 on axis 2 does not "
                                       r"fit bottom shape \(1, 1, 5, 5\)"):
        forward('name: "crop" type: "Crop" crop_param { offset: 2 }', random(1, 1, 5, 5),
                random(1, 1, 4, 4))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tile_forward_and_gradient(axis):
    x = random(2, 3, 2)
    text = f'type: "Tile" tile_param {{ axis: {axis} tiles: 3 }}'
    _, _, tops = forward(text, x)
    reps = [1, 1, 1]
    reps[axis] = 3
    expected = np.tile(x.reshape(x.shape[:axis] + (1,) + x.shape[axis:]),
                       reps[:axis] + [3] + [1] * (3 - axis))
    assert_close(tops[0].data, expected.reshape(tops[0].shape))
    check_gradient(text, x)
