"""Which given labels are probably wrong: scores, the noise estimates and the flag rule.

Pure functions of the models' class probabilities ``probs`` (N, K) and the
given labels (N,), as ``selection`` is for training.  MCT ranks a noisy batch
by the two models' average confidence in the given label; the same number,
over a whole set, is each sample's ``label_quality`` (low = suspect).

The estimates follow confident learning (Northcutt et al., 2021):

* class threshold ``t_j``: the average probability of class ``j`` over the
  samples labelled ``j`` (the models' typical self-confidence for ``j``);
* confident joint ``C[i, j]``: samples labelled ``i`` whose most probable
  class among those reaching their threshold is ``j`` (samples reaching no
  threshold are not counted);
* calibrated joint ``Q``: each row of ``C`` rescaled to the number of samples
  labelled ``i``, then divided by N: ``Q[i, j]`` estimates the share of the
  set labelled ``i`` whose true class is ``j``;
* per-class noise rate of class ``i``: ``1 - Q[i, i] / sum_j Q[i, j]``, the
  share of the samples labelled ``i`` that are not ``i``; overall: ``1 - trace Q``;
* transition matrix ``T[i, j] = P(given j | true i) = Q[j, i] / sum_k Q[k, i]``
  (rows: true class), the matrix label noise is usually described with.

``is_issue`` ("prune by noise rate"): within each given class ``i`` the
``round(n_i * noise_rate_i)`` samples of lowest ``label_quality`` are flagged,
so the number flagged per class is the estimated number of wrong labels, and
which ones are flagged follows the MCT score.
"""
import numpy as np

from ..errors import CaffeError


def label_quality(probs, labels):
    """The probability each sample's given label gets (MCT's selection score)."""
    return probs[np.arange(len(labels)), labels]


def class_thresholds(probs, labels):
    """Per class, the mean probability of that class over the samples labelled with it
    (+inf for a class nobody is labelled with: no sample is confidently in it)."""
    classes = probs.shape[1]
    counts = np.bincount(labels, minlength=classes)
    sums = np.zeros(classes)
    np.add.at(sums, labels, label_quality(probs, labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def confident_joint(probs, labels, thresholds):
    """C[i, j]: samples labelled i whose most probable class reaching its threshold is j."""
    classes = probs.shape[1]
    confident = probs >= thresholds[None, :]
    masked = np.where(confident, probs, -np.inf)
    guesses = masked.argmax(axis=1)
    counted = confident.any(axis=1)
    joint = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], guesses[counted]), 1)
    return joint


def calibrated_joint(joint, labels):
    """Q: the confident joint's rows rescaled to the given-label counts, over N."""
    classes = joint.shape[0]
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    rows = joint.sum(axis=1).astype(np.float64)
    scaled = np.where(rows[:, None] > 0, joint / np.maximum(rows, 1)[:, None], np.eye(classes))
    return scaled * counts[:, None] / max(len(labels), 1)


def noise_rates(joint_q):
    """(per given class: share of its samples whose true class differs, overall rate)."""
    given = joint_q.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(given > 0, 1 - np.diag(joint_q) / given, 0.0)
    return per_class, float(1 - np.trace(joint_q))


def transition_matrix(joint_q):
    """T[i, j] = P(given label j | true class i); a row with no estimated samples is I."""
    true_totals = joint_q.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = joint_q.T / true_totals[:, None]
    return np.where(true_totals[:, None] > 0, conditional, np.eye(len(true_totals)))


def flag_issues(quality, labels, per_class_rate):
    """(is_issue 0/1 per sample, per-class threshold): within each given class, the
    round(count x rate) lowest-quality samples; the threshold is the highest quality
    flagged (None when none is)."""
    is_issue = np.zeros(len(labels), dtype=np.int8)
    thresholds = []
    for cls, rate in enumerate(per_class_rate):
        members = np.flatnonzero(labels == cls)
        flagged = members[np.argsort(quality[members], kind="stable")]
        flagged = flagged[:int(round(len(members) * rate))]
        is_issue[flagged] = 1
        thresholds.append(float(quality[flagged].max()) if len(flagged) else None)
    return is_issue, thresholds


class LabelIssues:
    """Everything the report says, computed from probabilities and given labels."""

    rule = ("prune by noise rate: in each given class i, the round(n_i * noise_rate_i) "
            "samples of lowest label_quality (confident-learning estimate of noise_rate_i)")

    def __init__(self, probs, labels):
        labels = np.asarray(labels, dtype=np.int64)
        check_labels(labels, probs.shape[1], "the labels")
        self.labels = labels
        self.quality = label_quality(probs, labels)
        self.suggested = probs.argmax(axis=1)
        self.class_thresholds = class_thresholds(probs, labels)
        self.confident_joint = confident_joint(probs, labels, self.class_thresholds)
        self.joint = calibrated_joint(self.confident_joint, labels)
        self.per_class_rate, self.noise_rate = noise_rates(self.joint)
        self.transition = transition_matrix(self.joint)
        self.is_issue, self.issue_thresholds = flag_issues(self.quality, labels,
                                                           self.per_class_rate)

    @property
    def num_classes(self):
        return self.joint.shape[0]

    def order(self):
        """Sample indices from most to least suspect (label_quality ascending)."""
        return np.argsort(self.quality, kind="stable")


def labels_outside(labels, classes):
    """Positions of the labels that name none of ``classes`` classes."""
    return np.flatnonzero((labels < 0) | (labels >= classes))


def check_labels(labels, classes, where):
    """Every label must name one of the model's ``classes`` classes."""
    bad = labels_outside(labels, classes)
    if len(bad):
        raise CaffeError(f"{where}: label {int(labels[bad[0]])} of sample {int(bad[0])} is "
                         f"outside the model's {classes} classes (0..{classes - 1})")
