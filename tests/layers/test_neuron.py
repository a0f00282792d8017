"""ReLU, Sigmoid, TanH, Dropout: element-wise forward against numpy, in place, gradients."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct import rng
from pycaffe_mct.gradient_check import check_gradient_exhaustive
from pycaffe_mct.layer import TEST, TRAIN

ELEMENTWISE = {
    "relu": ('type: "ReLU"', lambda x: np.maximum(x, 0)),
    "leaky_relu": ('type: "ReLU" relu_param { negative_slope: 0.1 }',
                   lambda x: np.where(x > 0, x, 0.1 * x)),
    "sigmoid": ('type: "Sigmoid"', lambda x: 1 / (1 + np.exp(-x))),
    "tanh": ('type: "TanH"', lambda x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_forward(name):
    text, reference = ELEMENTWISE[name]
    x = uniform(2, 3, 4, seed=10, low=-3, high=3)
    _, _, tops = run_layer(text, x)
    np.testing.assert_allclose(tops[0].data, reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_gradient(name):
    text, _ = ELEMENTWISE[name]
    check_gradient_exhaustive(make_layer(text), blobs_from(uniform(2, 3, 4, seed=11)),
                              empty_tops(1), kink=0.0, kink_range=0.02)


def test_sigmoid_does_not_overflow():
    _, _, tops = run_layer('type: "Sigmoid"', np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(tops[0].data, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_in_place_gives_the_same_values_and_gradient(name):
    text, reference = ELEMENTWISE[name]
    x = uniform(3, 5, seed=12)
    dy = uniform(3, 5, seed=13)
    layer, bottoms, tops = run_layer(text, x)
    tops[0].diff[...] = dy
    layer.backward(tops, [True], bottoms)
    expected_dx = bottoms[0].diff.copy()
    blob = blobs_from(x)[0]
    in_place = make_layer(text)
    in_place.setup([blob], [blob])
    in_place.forward([blob], [blob])
    np.testing.assert_allclose(blob.data, reference(x), rtol=1e-5, atol=1e-6)
    blob.diff[...] = dy
    in_place.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, expected_dx, rtol=1e-6)


def test_dropout_train_zeroes_and_scales():
    rng.set_random_seed(3)
    x = uniform(100, 50, seed=14, low=0.5, high=1.5)
    layer, bottoms, tops = run_layer('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', x)
    y = tops[0].data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02
    tops[0].diff[...] = 1
    layer.backward(tops, [True], bottoms)
    np.testing.assert_allclose(bottoms[0].diff, kept / 0.7, rtol=1e-6)


def test_dropout_test_phase_is_identity():
    x = uniform(4, 6, seed=15)
    layer, bottoms, tops = run_layer('type: "Dropout"', x, phase=TEST)
    np.testing.assert_array_equal(tops[0].data, x.astype(np.float32))
    tops[0].diff[...] = 2
    layer.backward(tops, [True], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, 2)


def test_dropout_gradient_with_the_mask_held_fixed():
    # The checker reseeds before every forward, so each run draws the same mask.
    check_gradient_exhaustive(make_layer('type: "Dropout"', TRAIN),
                              blobs_from(uniform(3, 4, seed=16)), empty_tops(1))
