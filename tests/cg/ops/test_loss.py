"""Loss and accuracy ops (including Infogain, Hinge, Contrastive, SoftTarget, MCT's label
confidence) against numpy on both executors, and their layers' core-group profile."""
import numpy as np
import pytest

from pycaffe_mct import Net, TRAIN
from pycaffe_mct.cg import accounting, ops, scheduler
from pycaffe_mct.commands import profile
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt
from .op_helpers import rand, rng


TOL = dict(rtol=1e-5, atol=1e-6)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def literal_and_fast(kernel, call):
    """call() in literal mode (recorded) and in fast mode; both results, and the plans."""
    with scheduler.execution("literal"), accounting.recording() as plans:
        literal = call()
    with scheduler.execution("fast"):
        fast = call()
    assert [plan.kernel for plan in plans] == [kernel]
    assert plans[0].dma_in.sum() > 0
    return literal, fast


def assert_modes_match_numpy(kernel, call, expected, **tolerance):
    literal, fast = literal_and_fast(kernel, call)
    for got in (literal, fast):
        for value, want in zip(_as_tuple(got), _as_tuple(expected)):
            np.testing.assert_allclose(value, want, **(tolerance or TOL))


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def outputs(call, shape, dtype=np.float32):
    """A call writing into a fresh NaN-filled array, returning that array."""
    def run():
        out = np.full(shape, np.nan, dtype)
        call(out)
        return out
    return run


SHAPES = [(1, 1, 1), (70, 10, 1), (3, 5, 9), (130, 3, 1)]    # (outer, classes, inner)


def labels_for(shape):
    outer, classes, inner = shape
    return rng.integers(0, classes, (outer, inner)).astype(np.int32)


def picked(array, labels):
    return np.take_along_axis(array, labels[:, None, :].astype(np.int64), axis=1)[:, 0, :]


def test_prediction_labels_ignore_weights_and_the_first_bad_label():
    raw = np.array([2.7, 0, 3, -1, 1, 2], np.float32).reshape(2, 3)
    extra = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    call = lambda: ops.prediction_labels(raw, 3, ignore_label=-1, weights=extra)  # noqa: E731
    for labels, weights, total, bad in literal_and_fast("prediction_labels", call):
        np.testing.assert_array_equal(labels, [[2, 0, -1], [0, 1, 2]])
        np.testing.assert_array_equal(weights, [[1, 2, 0], [0, 5, 6]])
        assert total == 14 and bad == 3
    labels, weights, total, bad = ops.prediction_labels(np.arange(200, dtype=np.float32) % 7, 7)
    np.testing.assert_array_equal(labels, np.arange(200) % 7)
    assert total == 200 and bad is None and weights.dtype == np.float32


@pytest.mark.parametrize("shape", SHAPES)
def test_label_log_loss_and_reciprocal_gradient(shape):
    prob = softmax(rand(*shape) * 3)
    prob.reshape(-1)[0] = 0.0                                 # clipped at the threshold
    labels = labels_for(shape)
    weights = rng.random(labels.shape).astype(np.float32)
    clipped = np.maximum(picked(prob, labels), np.float32(1e-20))
    assert_modes_match_numpy("label_log_loss",
                             lambda: ops.label_log_loss(prob, labels, weights, 1e-20),
                             -(weights * np.log(clipped.astype(np.float64))).sum())
    expected = np.zeros(shape, np.float32)
    np.put_along_axis(expected, labels[:, None, :].astype(np.int64),
                      (-0.5 * weights / clipped)[:, None, :], axis=1)
    assert_modes_match_numpy(
        "label_reciprocal_gradient",
        outputs(lambda out: ops.label_reciprocal_gradient(prob, labels, weights, 1e-20, -0.5,
                                                          out), shape),
        expected)


@pytest.mark.parametrize("num,classes", [(1, 1), (70, 10), (3, 130)])
@pytest.mark.parametrize("squared", [False, True])
def test_hinge_margins_and_gradient(num, classes, squared):
    scores = rand(num, classes)
    labels = rng.integers(0, classes, num).astype(np.int32)
    sign = np.ones_like(scores)
    sign[np.arange(num), labels] = -1
    margins = np.maximum(0, 1 + sign * scores)
    total = (margins.astype(np.float64) ** (2 if squared else 1)).sum()
    assert_modes_match_numpy(
        "hinge_forward",
        lambda: (ops.hinge_margins(scores, labels, squared, kept := np.empty_like(scores)),
                 kept),
        (total, margins))
    signed = margins * sign
    expected = 2 * 0.25 * signed if squared else 0.25 * np.sign(signed)
    assert_modes_match_numpy(
        "hinge_backward",
        outputs(lambda out: ops.hinge_gradient(margins, labels, squared, 0.25, out),
                scores.shape), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_infogain_loss_and_gradient(shape):
    prob = softmax(rand(*shape))
    labels = labels_for(shape)
    weights = (rng.random(labels.shape) < 0.7).astype(np.float32)
    matrix = rng.random((shape[1], shape[1])).astype(np.float32)
    rows = matrix[labels].transpose(0, 2, 1).astype(np.float64)    # (outer, classes, inner)
    per_point = -(rows * np.log(np.maximum(prob, np.float32(1e-20)))).sum(axis=1)
    assert_modes_match_numpy("infogain_forward",
                             lambda: ops.infogain_loss(prob, labels, weights, matrix, 1e-20),
                             (weights * per_point).sum())
    expected = 0.5 * weights[:, None, :] * (prob * rows.sum(axis=1, keepdims=True) - rows)
    assert_modes_match_numpy(
        "infogain_backward",
        outputs(lambda out: ops.infogain_gradient(prob, labels, weights, matrix, 0.5, out),
                shape), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num,dim", [(1, 1), (70, 3), (5, 300)])
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss_and_gradient(num, dim, legacy):
    difference = rand(num, dim) * 0.5
    similarity = (rng.random(num) < 0.5).astype(np.float32)
    margin = 1.5
    dist_sq = (difference.astype(np.float64) ** 2).sum(axis=1)
    dist = np.sqrt(dist_sq)
    similar = similarity != 0
    if legacy:
        dissimilar = np.maximum(margin - dist_sq, 0)
        factor = np.where(similar, 0.3, np.where(margin - dist_sq > 0, -0.3, 0))
    else:
        dissimilar = np.maximum(margin - dist, 0) ** 2
        gap = margin - dist
        factor = np.where(similar, 0.3, np.where(gap > 0, -0.3 * gap / (dist + 1e-4), 0))
    assert_modes_match_numpy(
        "contrastive_forward",
        lambda: (ops.contrastive_loss(difference, similarity, margin, legacy,
                                      kept := np.empty(num)), kept),
        (np.where(similar, dist_sq, dissimilar).sum(), dist_sq))
    assert_modes_match_numpy(
        "contrastive_backward",
        outputs(lambda out: ops.contrastive_gradient(difference, similarity, dist_sq, margin,
                                                     legacy, 0.3, out), difference.shape),
        difference * factor[:, None])


@pytest.mark.parametrize("num,classes", [(1, 1), (70, 10), (3, 130)])
@pytest.mark.parametrize("weighted_soft", [False, True])
def test_soft_target_loss_and_gradient(num, classes, weighted_soft):
    primary, aux = rand(num, classes) * 3, rand(num, classes) * 3
    labels = rng.integers(0, classes, num).astype(np.int32)
    weights = (rng.random(num) < 0.6).astype(np.float32)
    temperature = 2.5
    z = primary.astype(np.float64)
    prob = softmax(z)
    soft_p, soft_a = softmax(z / temperature), softmax(aux.astype(np.float64) / temperature)
    hard = (weights * -np.log(prob[np.arange(num), labels])).sum()
    s = weights if weighted_soft else np.ones(num)
    kl = (soft_a * (np.log(soft_a) - np.log(soft_p))).sum(axis=1)
    assert_modes_match_numpy(
        "soft_target_forward",
        lambda: ops.soft_target_loss(primary, aux, labels, weights, temperature, weighted_soft),
        (hard, (s * kl).sum()), rtol=1e-9, atol=1e-12)
    one_hot = np.eye(classes)[labels]
    expected = (0.4 * weights[:, None] * (prob - one_hot)
                + 0.7 * s[:, None] * (soft_p - soft_a))
    assert_modes_match_numpy(
        "soft_target_backward",
        outputs(lambda out: ops.soft_target_gradient(primary, aux, labels, weights,
                                                     temperature, weighted_soft, 0.4, 0.7, out),
                primary.shape), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num,classes", [(1, 1), (70, 10), (3, 130)])
def test_label_confidence(num, classes):
    probs_a, probs_p = softmax(rand(num, classes)), softmax(rand(num, classes))
    labels = rng.integers(0, classes, num).astype(np.int32)
    rows = np.arange(num)
    expected = 0.5 * (probs_a[rows, labels].astype(np.float64) + probs_p[rows, labels])
    literal, fast = literal_and_fast("label_confidence",
                                  lambda: ops.label_confidence(probs_a, probs_p, labels))
    np.testing.assert_array_equal(literal, expected)
    np.testing.assert_array_equal(fast, expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("top_k", [1, 2])
def test_accuracy_counts_with_ties_and_ignored_predictions(shape, top_k):
    outer, classes, inner = shape
    scores = np.round(rand(*shape))                       # many ties
    labels = labels_for(shape)
    weights = (rng.random(labels.shape) < 0.8).astype(np.float32)
    truth = picked(scores, labels)[:, None, :]
    right = ((scores >= truth).sum(axis=1) - 1 < top_k) & (weights != 0)
    valid = weights != 0
    expected = (np.bincount(labels[valid], minlength=classes),
                np.bincount(labels[right], minlength=classes))
    literal, fast = literal_and_fast("accuracy",
                                  lambda: ops.accuracy_counts(scores, labels, weights, top_k))
    for got in (literal, fast):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


LOSS_NET = """
force_backward: true
layer { name: "in" type: "Input" top: "scores" top: "other" top: "label" top: "sim" top: "gain"
  input_param { shape { dim: 6 dim: 5 } shape { dim: 6 dim: 5 } shape { dim: 6 }
                shape { dim: 6 } shape { dim: 5 dim: 5 } } }
layer { name: "prob" type: "Softmax" bottom: "scores" top: "prob" }
layer { name: "prob_other" type: "Softmax" bottom: "other" top: "prob_other" }
layer { name: "softmax_loss" type: "SoftmaxWithLoss" bottom: "scores" bottom: "label" top: "l1" }
layer { name: "hinge" type: "HingeLoss" bottom: "scores" bottom: "label" top: "l2" }
layer { name: "logistic" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label"
  top: "l3" }
layer { name: "infogain" type: "InfogainLoss" bottom: "scores" bottom: "label" bottom: "gain"
  top: "l4" }
layer { name: "contrastive" type: "ContrastiveLoss" bottom: "scores" bottom: "other"
  bottom: "sim" top: "l5" }
layer { name: "soft_target" type: "SoftTargetLoss" bottom: "scores" bottom: "other"
  bottom: "label" top: "l6" }
layer { name: "mask" type: "ConfidenceMask" bottom: "prob" bottom: "prob_other"
  bottom: "label" top: "mask_a" top: "mask_p" }
layer { name: "accuracy" type: "Accuracy" bottom: "scores" bottom: "label" top: "acc" }
"""


def test_profile_shows_every_loss_and_accuracy_layer_on_the_core_group():
    net = Net(parse_prototxt(LOSS_NET, caffe_pb2.NetParameter()), TRAIN)
    for name, value in (("scores", rand(6, 5)), ("other", rand(6, 5)),
                        ("label", np.arange(6) % 5), ("sim", np.arange(6) % 2),
                        ("gain", rng.random((5, 5)))):
        net.blobs[name].data[...] = value
    records = {record.name: record for record in profile.profile_net(net, iterations=1)}
    losses = ["softmax_loss", "hinge", "logistic", "infogain", "contrastive", "soft_target"]
    for name in losses + ["mask", "accuracy"]:
        forward = records[name].forward
        assert forward.calls >= 2 and forward.dma_in_bytes > 0 and forward.flops > 0, name
    for name in losses:
        assert records[name].backward.dma_out_bytes > 0, name


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape", [(1, 1, 1), (70, 10, 1), (3, 4, 5)])
def test_label_gradient_matches_numpy(shape):
    outer, channels, inner = shape
    prob = rand(*shape)
    labels = rng.integers(0, channels, (outer, inner))
    weights = rng.random((outer, inner)).astype(np.float32)
    out = np.empty_like(prob)
    ops.label_gradient(prob, labels, weights, 0.5, out)
    one_hot = np.arange(channels)[None, :, None] == labels[:, None, :]
    np.testing.assert_allclose(out, (prob - one_hot) * weights[:, None, :] * 0.5, rtol=1e-6)
