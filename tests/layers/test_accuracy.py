"""Accuracy: top-k, ignore_label, ties counted as Caffe does, and the per-class second top."""
import numpy as np
import pytest

from layer_helpers import run_layer, uniform
from pycaffe_mct.errors import NetError


def reference_accuracy(scores, labels, top_k, ignore=None):
    """Per sample: right when fewer than top_k other classes score at least as high."""
    right, total = 0, 0
    per_class_right = np.zeros(scores.shape[1])
    per_class_total = np.zeros(scores.shape[1])
    for row, label in zip(scores, labels.astype(int)):
        if label == ignore:
            continue
        others = [c for c in range(len(row)) if c != label and row[c] >= row[label]]
        hit = len(others) < top_k
        right += hit
        total += 1
        per_class_total[label] += 1
        per_class_right[label] += hit
    per_class = np.divide(per_class_right, per_class_total,
                          out=np.zeros_like(per_class_right), where=per_class_total > 0)
    return right / max(total, 1), per_class


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_and_per_class(top_k):
    scores = uniform(12, 5, seed=30)
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 0])
    text = f'type: "Accuracy" accuracy_param {{ top_k: {top_k} }}'
    _, _, tops = run_layer(text, scores, labels, tops=2)
    overall, per_class = reference_accuracy(scores, labels, top_k)
    assert tops[0].shape == () and tops[1].shape == (5,)
    np.testing.assert_allclose(tops[0].data, overall, rtol=1e-6)
    np.testing.assert_allclose(tops[1].data, per_class, rtol=1e-6)


def test_ignore_label_and_absent_classes():
    scores = uniform(6, 4, seed=31)
    labels = np.array([0, 3, 3, 1, 3, 0])
    text = 'type: "Accuracy" accuracy_param { ignore_label: 3 }'
    _, _, tops = run_layer(text, scores, labels, tops=2)
    overall, per_class = reference_accuracy(scores, labels, 1, ignore=3)
    np.testing.assert_allclose(tops[0].data, overall, rtol=1e-6)
    np.testing.assert_allclose(tops[1].data, per_class, rtol=1e-6)
    assert tops[1].data[2] == 0 and tops[1].data[3] == 0      # never seen


def test_a_tie_with_the_true_class_is_a_miss():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    _, _, tops = run_layer('type: "Accuracy"', scores, np.array([0, 2]))
    assert tops[0].data == 0.0
    _, _, tops = run_layer('type: "Accuracy" accuracy_param { top_k: 2 }', scores,
                           np.array([0, 2]))
    assert tops[0].data == 1.0


def test_spatial_labels_along_axis():
    scores = uniform(2, 3, 4, seed=32)
    labels = np.array([[0, 1, 2, 0], [2, 2, 1, 0]])
    _, _, tops = run_layer('type: "Accuracy"', scores, labels)
    predicted = scores.argmax(axis=1)
    np.testing.assert_allclose(tops[0].data, (predicted == labels).mean(), rtol=1e-6)


def test_bad_input_names_the_layer():
    with pytest.raises(NetError, match=r"layer 'acc'.*top_k 4 exceeds the 3 classes"):
        run_layer('name: "acc" type: "Accuracy" accuracy_param { top_k: 4 }', uniform(2, 3),
                  np.array([0, 1]))
    with pytest.raises(NetError, match=r"layer 'acc'.*outside \[0, 3\)"):
        run_layer('name: "acc" type: "Accuracy"', uniform(2, 3), np.array([0, 3]))
