"""Sample selection of Mutual Calibration Training: pure functions of numbers.

Section 2.1 of the paper, as implemented here:

* Each noisy sample's *confidence* is the average of the two models'
  probabilities for its given (possibly wrong) label.
* The samples of the batch are ranked by confidence, most confident first;
  ties go to the lower sample index, so every rank of a multi-process run
  computes the identical ranking.
* The auxiliary model M_a takes the ``M`` most confident samples, where
  ``M = argmax_m [binocdf(m, B, 1 - P_noise) < 1%]`` (eq. 1): the number of
  clean samples in a batch of ``B`` is Binomial(B, 1 - P_noise), and the
  batch holds at least ``M`` clean ones with probability above 99%.  When no
  ``m`` qualifies (tiny batches, heavy noise) ``M`` is 0 and M_a learns from
  the clean batch alone.
* The primary model M_p takes ``N = ceil(B * (1 - P_noise))`` samples (eq. 2),
  the expected number of clean ones.  The paper says M_p "chooses samples of
  lower confidence ... hard samples" and sets the sample count to the
  expected clean count; we read that as M_p taking the N *most confident*
  samples: as ``N >= M`` this is M_a's selection extended further down the
  ranking into harder, less confident samples.  Skipping the most confident
  ones instead (ranks M..M+N) would drop exactly the samples most likely to
  be clean, and the soft targets alone could not make up for that.
* Ranking is over the *global* batch: in MPI runs the trainer first gathers
  both models' scores for the whole batch on every rank (``mct.trainer``), so
  every rank selects what one process with the whole batch selects.
"""
import math

import numpy as np

from ..errors import CaffeError, quote
from ..proto_io import read_text


def check_noise_rate(noise_rate, where="noise_rate"):
    """Raise a CaffeError unless ``noise_rate`` is in [0, 1)."""
    if not (0.0 <= noise_rate < 1.0):
        raise CaffeError(f"{where}: P_noise must be in [0, 1), got {noise_rate}")


def proto_float(value):
    """The decimal a float32 proto field was written as: float32 0.7 is 0.699999988,
    which would make eq. 2 give ceil(100 * 0.300000012) = 31 instead of 30."""
    return float(np.format_float_positional(np.float32(value), unique=True))


def softmax_rows(scores):
    """Row-wise softmax in float64, shifted by the row maximum for stability (the label-issue
    report and the benches score deployed nets' logits with it)."""
    scores = np.asarray(scores, dtype=np.float64)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def log_binomial_cdfs(trials, success):
    """log P(X <= m) for m = 0..trials, X ~ Binomial(trials, success).

    Summed in log space (log-gamma binomial coefficients, a running
    log-add-exp) so batches of thousands, whose single probabilities
    underflow doubles, stay exact to rounding.
    """
    k = np.arange(trials + 1, dtype=np.float64)
    log_gamma = np.vectorize(math.lgamma, otypes=[np.float64])
    log_choose = math.lgamma(trials + 1) - log_gamma(k + 1) - log_gamma(trials - k + 1)
    log_pmf = log_choose + _xlogy(k, success) + _xlogy(trials - k, 1.0 - success)
    return np.minimum(np.logaddexp.accumulate(log_pmf), 0.0)


def _xlogy(x, y):
    """x * log(y), with 0 * log(0) = 0 (a certain outcome contributes nothing)."""
    if y == 0.0:
        return np.where(x == 0, 0.0, -math.inf)
    return x * math.log(y)


def binomial_cdf(m, trials, success):
    """P(X <= m) for X ~ Binomial(trials, success): MATLAB's binocdf(m, B, P)."""
    if m < 0:
        return 0.0
    if m >= trials:
        return 1.0
    return math.exp(log_binomial_cdfs(trials, success)[m])


def aux_sample_count(batch_size, noise_rate, significance=0.01):
    """Eq. 1: the largest m with binocdf(m, B, 1 - P_noise) < significance (0 if none)."""
    check_noise_rate(noise_rate)
    below = np.flatnonzero(log_binomial_cdfs(batch_size, 1.0 - noise_rate)
                           < math.log(significance))
    # The cdf grows with m, so the qualifying m are 0..below[-1].
    return int(below[-1]) if below.size else 0


def primary_sample_count(batch_size, noise_rate):
    """Eq. 2: N = ceil(B * (1 - P_noise)), the expected clean samples in a batch."""
    check_noise_rate(noise_rate)
    # Round away float fuzz first so e.g. 100 * (1 - 0.4) = 60.000000000000007 gives 60.
    return min(batch_size, math.ceil(round(batch_size * (1.0 - noise_rate), 9)))


def confidence_order(confidence):
    """Sample indices from most to least confident; ties keep the lower index first."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(confidence.shape[0]), -confidence))


def top_mask(confidence, count):
    """0/1 float32 mask of the ``count`` most confident samples."""
    mask = np.zeros(np.asarray(confidence).reshape(-1).shape[0], dtype=np.float32)
    mask[confidence_order(confidence)[:count]] = 1.0
    return mask


def calibration_masks(confidence, noise_rate, significance=0.01):
    """Masks (mask_a, mask_p) of a batch from its samples' confidences (eqs. 1, 2)."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    batch = confidence.shape[0]
    return (top_mask(confidence, aux_sample_count(batch, noise_rate, significance)),
            top_mask(confidence, primary_sample_count(batch, noise_rate)))


def read_label_list(path):
    """{image path: label} from a "path label" list file; errors name file and line."""
    labels = {}
    for number, line in enumerate(read_text(path).split("\n"), 1):
        text = line.strip()
        if not text:
            continue
        name, _, label = text.rpartition(" ")
        try:
            labels[name.strip()] = int(label)
        except ValueError:
            raise CaffeError(f"{path}:{number}: expected 'path label', "
                             f"got {quote(repr(text))}") from None
    return labels


def estimate_noise_rate(noisy_labels, clean_labels):
    """P_noise: the share of images in both {path: label} maps whose labels differ."""
    shared = sorted(set(noisy_labels) & set(clean_labels))
    if not shared:
        raise CaffeError("cannot estimate P_noise: no image has both a noisy and a "
                         "clean label")
    wrong = sum(noisy_labels[name] != clean_labels[name] for name in shared)
    return wrong / len(shared)


def estimate_noise_rate_from_lists(noisy_list, clean_list):
    """P_noise estimated from two list files, as Clothing1M ships them."""
    noisy = read_label_list(noisy_list)
    clean = read_label_list(clean_list)
    try:
        return estimate_noise_rate(noisy, clean)
    except CaffeError as exc:
        raise CaffeError(f"{noisy_list} and {clean_list}: {exc}") from None
