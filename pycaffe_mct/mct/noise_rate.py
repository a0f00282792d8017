"""P_noise estimated from what a user has: a model trained on the clean subset,
its accuracy on clean validation data, and its predictions on the noisy set.

Let ``a`` be the model's accuracy on clean data and ``A`` the share of noisy
samples whose given label equals the model's prediction.  If the model's
errors spread evenly over the other K - 1 classes and do not depend on
whether a label was corrupted, a clean label is matched with probability
``a`` and a wrong one with probability ``(1 - a) / (K - 1)``, so

    A = a (1 - e) + e (1 - a) / (K - 1)   =>   e = (a - A) / (a - (1 - a) / (K - 1)).

Taking ``1 - A`` as the rate instead would count the model's own mistakes as
label noise.  The correction needs a model better than chance (a > 1/K).
Errors that collude with the noise (a model that confuses 3 and 8 on data
whose 3s were relabelled 8) make ``A`` too high and the estimate too low; the
benchmark reports each estimate next to the truth.
"""
from typing import NamedTuple

import numpy as np

from ..errors import CaffeError

MAX_RATE = 0.95        # eq. 1 and 2 need P_noise < 1; beyond this nothing is selected


class NoiseRateEstimate(NamedTuple):
    rate: float            # the estimated share of wrong labels, in [0, MAX_RATE]
    agreement: float       # A: predictions equal to the given noisy labels
    accuracy: float        # a: predictions equal to the clean validation labels
    noisy_count: int
    validation_count: int


def matches(scores, labels):
    """How many rows' most probable class is their label, and how many rows."""
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise CaffeError(f"need one row of class scores per label; got {scores.shape} "
                         f"scores for {labels.shape[0]} labels")
    return int(np.sum(scores.argmax(axis=1) == labels)), int(labels.shape[0])


def rate_from_agreement(agreement, accuracy, classes):
    """e from A and a (module docstring), clipped to [0, MAX_RATE]."""
    chance = 1.0 / classes
    if accuracy <= chance:
        raise CaffeError(f"cannot estimate P_noise: the model's validation accuracy "
                         f"{accuracy:.3f} is not above chance ({chance:.3f})")
    off_class = (1.0 - accuracy) / (classes - 1)
    rate = (accuracy - agreement) / (accuracy - off_class)
    return float(min(max(rate, 0.0), MAX_RATE))


def estimate_from_counts(matched, noisy_count, correct, validation_count, classes):
    """P_noise from counts: noisy samples whose prediction matched the given label,
    validation samples predicted correctly (what the ranks of an MPI job add up)."""
    if noisy_count <= 0 or validation_count <= 0:
        raise CaffeError("cannot estimate P_noise without noisy and validation samples")
    agreement, accuracy = matched / noisy_count, correct / validation_count
    return NoiseRateEstimate(rate_from_agreement(agreement, accuracy, classes), agreement,
                             accuracy, int(noisy_count), int(validation_count))


def estimate_noise_rate(noisy_scores, noisy_labels, validation_scores, validation_labels):
    """P_noise from a model's class scores (probabilities or logits) on the noisy set
    and on clean validation data."""
    classes = np.asarray(noisy_scores).shape[-1]
    return estimate_from_counts(*matches(noisy_scores, noisy_labels),
                                *matches(validation_scores, validation_labels), classes)
