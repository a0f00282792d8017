"""P_noise estimated from a model's predictions: exact on constructed counts, close on draws."""
import numpy as np
import pytest

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.mct.noise_models import corrupt_labels, noise_transition
from pycaffe_mct.mct.noise_rate import (MAX_RATE, estimate_from_counts, estimate_noise_rate,
                                        rate_from_agreement)


def test_rate_inverts_the_agreement_model():
    a, e, k = 0.8, 0.4, 10
    agreement = a * (1 - e) + e * (1 - a) / (k - 1)
    assert rate_from_agreement(agreement, a, k) == pytest.approx(e, abs=1e-12)


def test_a_perfect_model_reads_the_rate_as_its_disagreement():
    assert rate_from_agreement(0.65, 1.0, 10) == pytest.approx(0.35, abs=1e-12)


def test_rate_is_clipped_to_the_usable_range():
    assert rate_from_agreement(0.95, 0.9, 10) == 0.0
    assert rate_from_agreement(0.0, 0.5, 10) == MAX_RATE


def test_a_model_at_chance_cannot_estimate():
    with pytest.raises(CaffeError, match="not above chance"):
        rate_from_agreement(0.1, 0.1, 10)
    with pytest.raises(CaffeError, match="without noisy and validation samples"):
        estimate_from_counts(0, 0, 5, 10, 10)


def _simulated_model(truth, accuracy, generator):
    """One-hot scores of a model right with probability ``accuracy``, else a uniform other class."""
    wrong = corrupt_labels(truth, noise_transition("symmetric", 1 - accuracy), generator)
    return np.eye(10)[wrong]


@pytest.mark.parametrize("noise", ["symmetric", "pairflip"])
def test_estimate_recovers_the_rate_of_drawn_labels(noise):
    generator = np.random.default_rng(7)
    truth = generator.integers(0, 10, 40000)
    given = corrupt_labels(truth, noise_transition(noise, 0.4), generator)
    val_truth = generator.integers(0, 10, 20000)
    estimate = estimate_noise_rate(_simulated_model(truth, 0.85, generator), given,
                                   _simulated_model(val_truth, 0.85, generator), val_truth)
    assert estimate.accuracy == pytest.approx(0.85, abs=0.01)
    assert estimate.rate == pytest.approx(0.4, abs=0.015)
    assert (estimate.noisy_count, estimate.validation_count) == (40000, 20000)


def test_scores_and_labels_must_match():
    with pytest.raises(CaffeError, match="one row of class scores per label"):
        estimate_noise_rate(np.zeros((3, 10)), [1, 2], np.eye(10), np.arange(10))
