"""Loss layers of loss.py against numpy formulas; gradients by finite differences."""
import numpy as np
import pytest

from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.blob import Blob
from pycaffe_mct.errors import NetError
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import write_binary_proto


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


LABELS = np.array([2.0, 0.0, 3.0])


def test_euclidean_loss_and_gradients_to_both_bottoms():
    a, b = random(3, 4), random(3, 4, seed=1)
    text = 'type: "EuclideanLoss"'
    _, _, tops = forward(text, a, b)
    assert_close(tops[0].data, ((a - b) ** 2).sum() / 3 / 2)
    check_gradient(text, a, b)


@pytest.mark.parametrize("extra,divisor", [("", 3), ("loss_param { normalization: VALID }", 12),
                                           ("loss_param { ignore_label: -1 normalization: VALID }",
                                            11)])
def test_sigmoid_cross_entropy(extra, divisor):
    x = random(3, 4, low=-3, high=3)
    t = (random(3, 4, seed=1) > 0).astype(float)
    valid = np.ones_like(t, bool)
    if "ignore" in extra:
        t[1, 2], valid[1, 2] = -1, False
    text = f'type: "SigmoidCrossEntropyLoss" {extra}'
    _, _, tops = forward(text, x, t)
    p = 1 / (1 + np.exp(-x))
    terms = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert_close(tops[0].data, terms[valid].sum() / divisor)
    check_gradient(text, x, t, check_bottoms=[0])


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm):
    x = random(3, 4, low=-2, high=2)
    text = f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}'
    _, _, tops = forward(text, x, LABELS)
    sign = -np.ones_like(x)
    sign[np.arange(3), LABELS.astype(int)] = 1
    margins = np.maximum(0, 1 - sign * x)
    expected = (margins if norm == "L1" else margins ** 2).sum() / 3
    assert_close(tops[0].data, expected)
    check_gradient(text, x, LABELS, check_bottoms=[0], kink_range=0.02 if norm == "L1" else -1)


def test_multinomial_logistic_loss():
    p = softmax(random(3, 4))
    text = 'type: "MultinomialLogisticLoss"'
    _, _, tops = forward(text, p, LABELS)
    assert_close(tops[0].data, -np.log(p[np.arange(3), LABELS.astype(int)]).sum() / 3)
    check_gradient(text, p, LABELS, check_bottoms=[0], stepsize=1e-3, threshold=5e-3)


def _infogain_expected(x, labels, h, axis_classes=1):
    p = softmax(x, axis_classes)
    rows = h[labels.astype(int)]
    return -(rows * np.log(p)).sum() / len(labels)


def test_infogain_loss_with_matrix_bottom_and_file(tmp_path):
    x = random(3, 4)
    h = random(4, 4, seed=7, low=0, high=1)
    text = 'type: "InfogainLoss"'
    _, _, tops = forward(text, x, LABELS, h)
    assert_close(tops[0].data, _infogain_expected(x, LABELS, h))
    check_gradient(text, x, LABELS, h, check_bottoms=[0])
    blob = Blob((1, 1, 4, 4))
    blob.data[...] = h.reshape(1, 1, 4, 4)
    path = tmp_path / "h.binaryproto"
    write_binary_proto(str(path), blob.to_proto(caffe_pb2.BlobProto()))
    file_text = f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}'
    _, _, tops = forward(file_text, x, LABELS)
    assert_close(tops[0].data, _infogain_expected(x, LABELS, h))


def test_infogain_needs_a_matrix():
    with pytest.raises(NetError, match="source is required"):
        forward('type: "InfogainLoss"', random(3, 4), LABELS)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy):
    a, b = random(4, 3, 1, 1), random(4, 3, 1, 1, seed=1)
    y = np.array([1.0, 0.0, 0.0, 1.0])
    margin = 1.5
    text = (f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} '
            f'legacy_version: {str(legacy).lower()} }}')
    _, _, tops = forward(text, a, b, y)
    d2 = ((a - b) ** 2).reshape(4, -1).sum(axis=1)
    far = np.maximum(margin - d2, 0) if legacy else np.maximum(margin - np.sqrt(d2), 0) ** 2
    assert_close(tops[0].data, np.where(y == 1, d2, far).sum() / 4 / 2)
    # Caffe's backward adds 1e-4 to the distance: a slightly looser threshold.
    check_gradient(text, a, b, y, check_bottoms=[0, 1], threshold=5e-3)
