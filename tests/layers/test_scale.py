"""Scale and Bias against numpy broadcasting; gradients by finite differences."""
import numpy as np
import pytest

from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.errors import NetError

FILLED = 'filler { type: "uniform" min: -1 max: 1 }'


@pytest.mark.parametrize("axis,num_axes,operand_shape", [(1, 1, (3,)), (0, -1, (2, 3, 4)),
                                                         (-2, 2, (3, 4)), (1, 0, ())])
def test_learned_scale_with_bias(axis, num_axes, operand_shape):
    x = random(2, 3, 4)
    text = (f'type: "Scale" scale_param {{ axis: {axis} num_axes: {num_axes} {FILLED} '
            f'bias_term: true bias_filler {{ type: "uniform" min: -1 max: 1 }} }}')
    layer, _, tops = forward(text, x)
    scale, bias = (blob.data.astype(np.float64) for blob in layer.blobs)
    assert scale.shape == operand_shape
    start = axis % 3 if operand_shape else 0
    expected = x * _broadcast(scale, start) + _broadcast(bias, start)
    assert_close(tops[0].data, expected)
    check_gradient(text, x)


def _broadcast(operand, start):
    return operand.reshape((1,) * start + operand.shape + (1,) * (3 - start - operand.ndim))


def test_scale_defaults_to_ones_and_zero_bias():
    layer, _, tops = forward('type: "Scale" scale_param { bias_term: true }', random(2, 3))
    assert (layer.blobs[0].data == 1).all() and (layer.blobs[1].data == 0).all()


def test_scale_by_second_bottom_and_its_gradient():
    x, s = random(2, 3, 4), random(3, 4, seed=1)
    text = 'type: "Scale" scale_param { axis: 1 }'
    layer, _, tops = forward(text, x, s)
    assert layer.blobs == []
    assert_close(tops[0].data, x * s[None])
    check_gradient(text, x, s)


def test_scale_in_place_keeps_its_input_for_the_gradient():
    x = random(2, 3, 2)
    layer, bottoms, _ = forward(f'type: "Scale" scale_param {{ {FILLED} }}', x)
    tops = bottoms
    layer.setup(bottoms, tops)
    layer.forward(bottoms, tops)
    scale = layer.blobs[0].data.reshape(1, 3, 1)
    tops[0].diff[...] = 1.0
    layer.blobs[0].diff[...] = 0
    layer.backward(tops, [True], bottoms)
    assert_close(layer.blobs[0].diff, x.sum(axis=(0, 2)))
    assert_close(bottoms[0].diff, np.broadcast_to(scale, x.shape))


def test_bias_learned_and_from_bottom():
    x, b = random(2, 3, 4), random(3, seed=2)
    text = 'type: "Bias" bias_param { filler { type: "uniform" min: -1 max: 1 } }'
    layer, _, tops = forward(text, x)
    assert_close(tops[0].data, x + layer.blobs[0].data.reshape(1, 3, 1))
    check_gradient(text, x)
    _, _, tops = forward('type: "Bias"', x, b)
    assert_close(tops[0].data, x + b.reshape(1, 3, 1))
    check_gradient('type: "Bias"', x, b)


def test_scale_operand_shape_mismatch_names_shapes():
    with pytest.raises(NetError, match=r"operand shape \(4,\) does not match bottom shape "
                                       r"\(2, 3, 4\) from axis 1"):
        forward('name: "s" type: "Scale"', random(2, 3, 4), random(4))


def test_scale_axis_out_of_range():
    with pytest.raises(NetError, match=r"layer 's'.*axis 3 out of range for bottom shape"):
        forward('name: "s" type: "Scale" scale_param { axis: 3 }', random(2, 3, 4))
