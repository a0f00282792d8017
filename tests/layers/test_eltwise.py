"""Eltwise, Reduction, ArgMax against numpy; gradients by finite differences."""
import numpy as np
import pytest

from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.errors import NetError


@pytest.mark.parametrize("text,expected", [
    ('operation: SUM', lambda a, b, c: a + b + c),
    ('operation: SUM coeff: 2 coeff: -1 coeff: 0.5', lambda a, b, c: 2 * a - b + 0.5 * c),
    ('operation: PROD', lambda a, b, c: a * b * c),
    ('operation: PROD stable_prod_grad: false', lambda a, b, c: a * b * c),
    ('operation: MAX', lambda a, b, c: np.maximum(np.maximum(a, b), c)),
])
def test_eltwise_forward_and_gradient(text, expected):
    arrays = [random(2, 3, 2, seed=s) for s in range(3)]
    layer_text = f'type: "Eltwise" eltwise_param {{ {text} }}'
    _, _, tops = forward(layer_text, *arrays)
    assert_close(tops[0].data, expected(*arrays))
    check_gradient(layer_text, *arrays)


def test_eltwise_shapes_must_agree():
    with pytest.raises(NetError, match=r"layer 'sum'.*bottom 1 has shape \(2, 4\) but "
                                       r"bottom 0 has \(2, 3\)"):
        forward('name: "sum" type: "Eltwise"', random(2, 3), random(2, 4))


def test_eltwise_coeff_count_checked():
    with pytest.raises(NetError, match="coeff has 1 values for 2 bottoms"):
        forward('type: "Eltwise" eltwise_param { coeff: 1 }', random(2), random(2))


@pytest.mark.parametrize("op,axis,fn", [
    ("SUM", 0, lambda x: x.sum()), ("ASUM", 1, lambda x: np.abs(x).sum(axis=(1, 2))),
    ("SUMSQ", -1, lambda x: (x * x).sum(axis=2)), ("MEAN", 1, lambda x: x.mean(axis=(1, 2)))])
def test_reduction_forward_and_gradient(op, axis, fn):
    x = random(2, 3, 4)
    text = f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: 1.5 }}'
    _, _, tops = forward(text, x)
    assert_close(tops[0].data, 1.5 * fn(x))
    check_gradient(text, x)


def test_argmax_flattened_with_values_and_ties_to_the_higher_index():
    x = np.array([[[1.0, 5.0, 5.0, 0.0]], [[3.0, 2.0, 1.0, 4.0]]])
    _, _, tops = forward('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }', x)
    assert tops[0].shape == (2, 2, 2)
    assert_close(tops[0].data[:, 0], [[2, 1], [3, 0]])
    assert_close(tops[0].data[:, 1], [[5, 5], [4, 3]])


def test_argmax_along_axis():
    x = random(2, 5, 3)
    _, _, tops = forward('type: "ArgMax" argmax_param { axis: 1 }', x)
    assert tops[0].shape == (2, 1, 3)
    assert_close(tops[0].data[:, 0], x.argmax(axis=1))
    _, _, tops = forward('type: "ArgMax" argmax_param { axis: 1 out_max_val: true }', x)
    assert_close(tops[0].data[:, 0], x.max(axis=1))


def test_argmax_top_k_too_large():
    with pytest.raises(NetError, match="top_k 7 exceeds the 6 values"):
        forward('type: "ArgMax" argmax_param { top_k: 7 }', random(2, 6))


def test_eltwise_max_gradient_goes_to_the_first_of_tied_bottoms():
    a, b = np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]])
    layer, bottoms, tops = forward('type: "Eltwise" eltwise_param { operation: MAX }', a, b)
    tops[0].diff[...] = [[5.0, 7.0]]
    layer.backward(tops, [True, True], bottoms)
    assert_close(bottoms[0].diff, [[5.0, 0.0]])
    assert_close(bottoms[1].diff, [[0.0, 7.0]])
