"""Softmax over an axis, and SoftmaxWithLoss with ignore_label and every normalization."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive


def reference_softmax(x, axis):
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [1, 2, -1, 0])
def test_softmax_forward_and_gradient(axis):
    x = uniform(2, 3, 4, seed=20, low=-3, high=3)
    text = f'type: "Softmax" softmax_param {{ axis: {axis} }}'
    _, _, tops = run_layer(text, x)
    np.testing.assert_allclose(tops[0].data, reference_softmax(x, axis), rtol=1e-5, atol=1e-7)
    check_gradient_exhaustive(make_layer(text), blobs_from(x), empty_tops(1))


def test_softmax_is_stable_for_large_inputs():
    _, _, tops = run_layer('type: "Softmax"', np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(tops[0].data, [[0.5, 0.5, 0.0]])


def reference_loss(x, labels, axis, ignore, mode):
    """Mean negative log-likelihood written from Caffe's formulas, one prediction at a time."""
    prob = reference_softmax(x, axis)
    prob = np.moveaxis(prob, axis, -1).reshape(-1, x.shape[axis])
    labels = labels.reshape(-1).astype(int)
    total, valid = 0.0, 0
    for p, label in zip(prob, labels):
        if label == ignore:
            continue
        total -= np.log(max(p[label], np.finfo(np.float32).tiny))
        valid += 1
    outer = int(np.prod(x.shape[:axis]))
    normalizer = {"FULL": labels.size, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return total / max(1.0, normalizer)


def loss_text(extra="", axis=1):
    return f'type: "SoftmaxWithLoss" softmax_param {{ axis: {axis} }} {extra}'


NORMALIZATIONS = ["VALID", "BATCH_SIZE", "FULL", "NONE"]


@pytest.mark.parametrize("mode", NORMALIZATIONS)
@pytest.mark.parametrize("ignore", [None, 2])
def test_loss_forward_with_spatial_labels(mode, ignore):
    x = uniform(2, 4, 3, seed=21, low=-2, high=2)
    labels = np.array([[0, 2, 3], [2, 1, 2]])
    extra = f"loss_param {{ normalization: {mode} "
    extra += (f"ignore_label: {ignore} }}" if ignore is not None else "}")
    layer, _, tops = run_layer(loss_text(extra), x, labels)
    assert tops[0].shape == ()
    expected = reference_loss(x, labels, 1, ignore, mode)
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-5)
    assert layer.loss_weights == [1.0]                  # a loss by default


@pytest.mark.parametrize("mode", NORMALIZATIONS)
def test_loss_gradient(mode):
    x = uniform(3, 4, 2, seed=22, low=-2, high=2)
    labels = np.array([[0, 3], [1, 1], [2, 3]])
    text = loss_text(f"loss_param {{ normalization: {mode} ignore_label: 1 }}")
    check_gradient_exhaustive(make_layer(text), blobs_from(x, labels), empty_tops(1),
                              check_bottoms=[0])


def test_ignored_predictions_get_no_gradient():
    x = uniform(3, 4, seed=23)
    labels = np.array([1, 0, 1])
    layer, bottoms, tops = run_layer(loss_text("loss_param { ignore_label: 1 }"), x, labels)
    layer.backward(tops, [True, False], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff[[0, 2]], 0)
    expected = reference_softmax(x[1], 0)
    expected[0] -= 1
    np.testing.assert_allclose(bottoms[0].diff[1], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("normalize,mode", [("true", "VALID"), ("false", "BATCH_SIZE")])
def test_legacy_normalize_field(normalize, mode):
    x = uniform(2, 3, 2, seed=24)
    labels = np.array([[0, 2], [2, 1]])
    text = loss_text(f"loss_param {{ normalize: {normalize} ignore_label: 2 }}")
    _, _, tops = run_layer(text, x, labels)
    np.testing.assert_allclose(tops[0].data, reference_loss(x, labels, 1, 2, mode), rtol=1e-5)


def test_loss_over_another_axis_and_a_second_top_with_the_probabilities():
    x = uniform(2, 3, 4, seed=25)
    labels = np.array([[0, 3, 1], [2, 2, 0]])
    layer, _, tops = run_layer(loss_text(axis=2), x, labels, tops=2)
    np.testing.assert_allclose(tops[0].data, reference_loss(x, labels, 2, None, "VALID"),
                               rtol=1e-5)
    np.testing.assert_allclose(tops[1].data, reference_softmax(x, 2), rtol=1e-5, atol=1e-7)


def test_loss_weight_scales_loss_and_gradient():
    x = uniform(2, 3, seed=26)
    labels = np.array([0, 2])
    layer, bottoms, tops = run_layer(loss_text("loss_weight: 3"), x, labels)
    weighted = layer.forward(bottoms, tops)
    np.testing.assert_allclose(weighted, 3 * reference_loss(x, labels, 1, None, "VALID"),
                               rtol=1e-5)
    layer.backward(tops, [True, False], bottoms)
    expected = reference_softmax(x, 1)
    expected[[0, 1], labels] -= 1
    np.testing.assert_allclose(bottoms[0].diff, 3 * expected / 2, rtol=1e-5, atol=1e-7)


def test_bad_labels_name_the_layer():
    with pytest.raises(NetError, match=r"layer 'loss'.*label 5 is outside \[0, 3\)"):
        run_layer('name: "loss" ' + loss_text(), uniform(2, 3), np.array([0, 5]))
    with pytest.raises(NetError, match=r"layer 'loss'.*6 labels for 2 predictions"):
        run_layer('name: "loss" ' + loss_text(), uniform(2, 3), np.array([[0, 1, 2], [0, 1, 2]]))
