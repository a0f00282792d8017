"""The label-issue maths: confident-learning estimates and the flag rule, against loops."""
import numpy as np
import pytest

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.mct.label_issues import LabelIssues, confident_joint


def _flipped_set(classes=4, per_class=25, flip_every=5, seed=0):
    """Probabilities that put 0.85 on the true class and given labels of which every
    ``flip_every``-th is moved to the next class (pair flip): (probs, given, true)."""
    true = np.repeat(np.arange(classes), per_class)
    given = true.copy()
    given[::flip_every] = (true[::flip_every] + 1) % classes
    noise = np.random.default_rng(seed).uniform(0, 0.02, (len(true), classes))
    probs = np.full((len(true), classes), 0.15 / (classes - 1)) + noise
    probs[np.arange(len(true)), true] = 0.85
    return probs / probs.sum(axis=1, keepdims=True), given, true


def _loop_confident_joint(probs, labels):
    """Confident learning's C, sample by sample, as Northcutt et al. define it."""
    classes = probs.shape[1]
    thresholds = [np.mean([probs[n, j] for n in range(len(labels)) if labels[n] == j])
                  for j in range(classes)]
    joint = np.zeros((classes, classes), dtype=int)
    for n, label in enumerate(labels):
        above = [j for j in range(classes) if probs[n, j] >= thresholds[j]]
        if above:
            joint[label, max(above, key=lambda j: probs[n, j])] += 1
    return joint, thresholds


def test_confident_joint_and_thresholds_match_a_per_sample_loop():
    generator = np.random.default_rng(3)
    probs = generator.dirichlet(np.ones(5) * 0.7, size=300)
    labels = generator.integers(0, 5, 300)
    issues = LabelIssues(probs, labels)
    expected, thresholds = _loop_confident_joint(probs, labels)
    np.testing.assert_allclose(issues.class_thresholds, thresholds, rtol=1e-12)
    np.testing.assert_array_equal(issues.confident_joint, expected)
    np.testing.assert_array_equal(confident_joint(probs, labels, issues.class_thresholds),
                                  expected)
    assert issues.joint.sum() == pytest.approx(1)
    np.testing.assert_allclose(issues.joint.sum(axis=1) * 300, np.bincount(labels, minlength=5))


def test_a_known_pair_flip_is_recovered_exactly():
    probs, given, true = _flipped_set()
    issues = LabelIssues(probs, given)
    wrong = given != true
    assert issues.noise_rate == pytest.approx(wrong.mean())
    for cls in range(4):
        labelled = given == cls
        assert issues.per_class_rate[cls] == pytest.approx(np.mean(wrong[labelled]))
    # T[i, j] = P(given j | true i): 5 of 25 of each class moved to the next one.
    expected = np.eye(4) * 0.8 + np.roll(np.eye(4), 1, axis=1) * 0.2
    np.testing.assert_allclose(issues.transition, expected, atol=1e-12)
    np.testing.assert_array_equal(issues.is_issue.astype(bool), wrong)
    np.testing.assert_array_equal(issues.suggested, true)
    np.testing.assert_allclose(issues.quality, probs[np.arange(len(given)), given])
    assert np.all(np.diff(issues.quality[issues.order()]) >= 0)


def test_flags_are_the_lowest_quality_per_class_up_to_the_estimated_count():
    generator = np.random.default_rng(7)
    probs = generator.dirichlet(np.ones(3), size=200)
    labels = generator.integers(0, 3, 200)
    issues = LabelIssues(probs, labels)
    for cls in range(3):
        members = np.flatnonzero(labels == cls)
        flagged = members[issues.is_issue[members] == 1]
        assert len(flagged) == round(len(members) * issues.per_class_rate[cls])
        if len(flagged):
            threshold = issues.issue_thresholds[cls]
            assert issues.quality[flagged].max() == threshold
            kept = np.setdiff1d(members, flagged)
            assert issues.quality[kept].min() >= threshold


def test_a_class_nobody_is_labelled_with_gets_no_confident_samples():
    probs, given, _ = _flipped_set(classes=3)
    probs = np.hstack([probs * 0.9, np.full((len(given), 1), 0.1)])
    issues = LabelIssues(probs, given)
    assert np.isinf(issues.class_thresholds[3])
    assert issues.confident_joint[:, 3].sum() == 0
    np.testing.assert_array_equal(issues.transition[3], np.eye(4)[3])


def test_labels_outside_the_classes_are_refused():
    probs, given, _ = _flipped_set()
    given[7] = 4
    with pytest.raises(CaffeError, match="label 4 of sample 7 is outside the model's 4 "
                                         "classes"):
        LabelIssues(probs, given)
