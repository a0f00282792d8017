"""MCT layers (ConfidenceMask, SoftTargetLoss) and SoftmaxWithLoss's weight bottom."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.gradient_check import check_gradient_exhaustive

RNG = np.random.default_rng(7)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---- ConfidenceMask -----------------------------------------------------------

def test_confidence_mask_forward_against_numpy():
    batch, classes = 20, 4
    probs_a = softmax(RNG.standard_normal((batch, classes)))
    probs_p = softmax(RNG.standard_normal((batch, classes)))
    labels = RNG.integers(0, classes, batch)
    layer = make_layer('type: "ConfidenceMask" confidence_mask_param { noise_rate: 0.7 }')
    bottom = blobs_from(probs_a, probs_p, labels)
    top = empty_tops(2)
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    confidence = (probs_a[np.arange(batch), labels] + probs_p[np.arange(batch), labels]) / 2
    order = np.argsort(-confidence, kind="stable")
    expected_a = np.zeros(batch)
    expected_a[order[:1]] = 1     # scipy: largest m with binom.cdf(m, 20, 0.3) < 0.01 is 1
    expected_p = np.zeros(batch)
    expected_p[order[:6]] = 1     # ceil(20 * 0.3), exact despite float32 0.7
    assert np.array_equal(top[0].data, expected_a)
    assert np.array_equal(top[1].data, expected_p)


def test_confidence_mask_bad_input_names_the_layer():
    with pytest.raises(CaffeError, match=r"layer 'sel'.*P_noise must be in \[0, 1\)"):
        layer = make_layer('name: "sel" type: "ConfidenceMask" '
                           'confidence_mask_param { noise_rate: 1.0 }')
        layer.setup(blobs_from(np.ones((2, 3)), np.ones((2, 3)), [0, 1]), empty_tops(2))
    layer = make_layer('name: "sel" type: "ConfidenceMask"')
    with pytest.raises(CaffeError, match="layer 'sel'.*class counts differ"):
        layer.setup(blobs_from(np.ones((2, 3)), np.ones((2, 4)), [0, 1]), empty_tops(2))


# ---- SoftTargetLoss -----------------------------------------------------------

def soft_target_numpy(primary, aux, labels, weights, temperature, lam, weighted_soft):
    """Distillation loss written out independently of the layer."""
    batch = primary.shape[0]
    log_p = np.log(softmax(primary))
    hard = -log_p[np.arange(batch), labels]
    q = softmax(aux / temperature)
    log_r = np.log(softmax(primary / temperature))
    kl = (q * (np.log(q) - log_r)).sum(axis=1)
    soft_w = weights if weighted_soft else np.ones(batch)
    return ((1 - lam) * (weights * hard).sum() / max(1, weights.sum())
            + lam * temperature ** 2 * (soft_w * kl).sum() / max(1, soft_w.sum()))


def _soft_target_case(scope="ALL", with_mask=True, temperature=3.0, lam=0.7):
    batch, classes = 6, 5
    primary = RNG.standard_normal((batch, classes)) * 2
    aux = RNG.standard_normal((batch, classes)) * 2
    labels = RNG.integers(0, classes, batch)
    weights = np.array([1, 0, 1, 1, 0, 1], dtype=float)
    layer = make_layer(f'type: "SoftTargetLoss" soft_target_param {{ temperature: {temperature}'
                       f' soft_weight: {lam} soft_scope: {scope} }}')
    arrays = [primary, aux, labels] + ([weights] if with_mask else [])
    expected = soft_target_numpy(primary, aux, labels, weights if with_mask else np.ones(batch),
                                 temperature, lam, scope == "WEIGHTED")
    return layer, blobs_from(*arrays), expected


@pytest.mark.parametrize("scope", ["ALL", "WEIGHTED"])
@pytest.mark.parametrize("with_mask", [True, False])
def test_soft_target_forward_against_numpy(scope, with_mask):
    layer, bottom, expected = _soft_target_case(scope, with_mask)
    top = empty_tops(1)
    layer.setup(bottom, top)
    assert layer.forward(bottom, top) == pytest.approx(expected, rel=1e-5)


def test_soft_target_pure_hard_term_is_softmax_cross_entropy():
    layer, bottom, _ = _soft_target_case(lam=0.0, with_mask=False)
    top = empty_tops(1)
    layer.setup(bottom, top)
    reference = make_layer('type: "SoftmaxWithLoss"')
    ref_top = empty_tops(1)
    reference.setup([bottom[0], bottom[2]], ref_top)
    assert layer.forward(bottom, top) == pytest.approx(
        reference.forward([bottom[0], bottom[2]], ref_top), rel=1e-5)


@pytest.mark.parametrize("scope", ["ALL", "WEIGHTED"])
def test_soft_target_gradient(scope):
    layer, bottom, _ = _soft_target_case(scope)
    # Measured worst: 1.8e-5 (finite differences at step 1e-2 on the softmax curvature).
    check_gradient_exhaustive(layer, bottom, empty_tops(1), check_bottoms=[0],
                              stepsize=1e-2, threshold=2e-4)


def test_soft_target_rejects_mismatched_class_counts_and_gradient_to_aux():
    layer = make_layer('name: "distill" type: "SoftTargetLoss"')
    with pytest.raises(CaffeError, match="layer 'distill'.*class counts differ"):
        layer.setup(blobs_from(np.ones((2, 3)), np.ones((2, 4)), [0, 1]), empty_tops(1))
    layer, bottom, _ = _soft_target_case()
    top = empty_tops(1)
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    with pytest.raises(CaffeError, match="only the primary scores"):
        layer.backward(top, [True, True, False, False], bottom)


# ---- SoftmaxWithLoss with a weight bottom ------------------------------------

def _weighted_softmax_case(normalization):
    batch, classes = 5, 4
    scores = RNG.standard_normal((batch, classes))
    labels = RNG.integers(0, classes, batch)
    weights = np.array([1.0, 0.0, 0.5, 1.0, 2.0])
    layer = make_layer(f'type: "SoftmaxWithLoss" loss_param {{ normalization: {normalization} }}')
    return layer, blobs_from(scores, labels, weights), (scores, labels, weights)


@pytest.mark.parametrize("normalization,divisor", [("VALID", 4.5), ("BATCH_SIZE", 5),
                                                   ("FULL", 5), ("NONE", 1)])
def test_weighted_softmax_loss_forward_against_numpy(normalization, divisor):
    layer, bottom, (scores, labels, weights) = _weighted_softmax_case(normalization)
    top = empty_tops(1)
    layer.setup(bottom, top)
    picked = softmax(scores)[np.arange(5), labels]
    expected = (weights * -np.log(picked)).sum() / divisor
    assert layer.forward(bottom, top) == pytest.approx(expected, rel=1e-5)


def test_weighted_softmax_loss_gradient():
    layer, bottom, _ = _weighted_softmax_case("VALID")
    # Measured worst: 2e-6.
    check_gradient_exhaustive(layer, bottom, empty_tops(1), check_bottoms=[0],
                              stepsize=1e-2, threshold=2e-5)


def test_weighted_softmax_loss_rejects_wrong_weight_count():
    layer = make_layer('name: "loss" type: "SoftmaxWithLoss"')
    with pytest.raises(CaffeError, match="layer 'loss'.*3 weights for 2 labels"):
        layer.setup(blobs_from(np.ones((2, 3)), [0, 1], [1, 1, 1]), empty_tops(1))
