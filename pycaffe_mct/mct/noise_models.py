"""Synthetic label noise as a K x K row-stochastic transition matrix.

Row ``c`` of a transition matrix is the distribution of the given label for
true class ``c``.  Every noise model of ``make_digits_dataset`` and of the MCT
benchmark is one such matrix, so a user's own model (``--transition
FILE.npy``) goes through the same code as the built-in ones:

* ``symmetric``: a label moves with probability ``rate`` to one of the other
  K - 1 classes, uniformly.
* ``pairflip``: class k moves to k + 1 (mod K) with probability ``rate``.
* ``asymmetric``: the classic MNIST flips of the literature (Patrini et al.
  2017, Han et al. 2018): 2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1 with probability
  ``rate``; the other classes keep their labels, so the share of wrong labels
  is about rate / 2 on balanced digits.
"""
import numpy as np

from ..errors import CaffeError

NOISE_MODELS = ("symmetric", "pairflip", "asymmetric")
MNIST_FLIPS = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


def check_rate(rate):
    if not 0 <= rate <= 1:
        raise CaffeError(f"noise rate {rate} is not in [0, 1]")


def noise_transition(noise, rate, classes=10):
    """The transition matrix of a named noise model at ``rate``."""
    check_rate(rate)
    if noise == "symmetric":
        matrix = np.full((classes, classes), rate / (classes - 1))
        np.fill_diagonal(matrix, 1 - rate)
        return matrix
    if noise == "pairflip":
        flips = {c: (c + 1) % classes for c in range(classes)}
    elif noise == "asymmetric":
        if classes != 10:
            raise CaffeError(f"the asymmetric MNIST flips need 10 classes, not {classes}")
        flips = MNIST_FLIPS
    else:
        raise CaffeError(f"unknown noise type '{noise}' (use {', '.join(NOISE_MODELS)} "
                         f"or a transition matrix)")
    matrix = np.eye(classes)
    for source, target in flips.items():
        matrix[source, source] -= rate
        matrix[source, target] += rate
    return matrix


def check_transition(matrix, classes, where="transition matrix"):
    """Raise a CaffeError unless ``matrix`` is a classes x classes row-stochastic matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (classes, classes):
        raise CaffeError(f"{where}: expected a {classes}x{classes} matrix, got shape "
                         f"{matrix.shape}")
    if not np.all(np.isfinite(matrix)) or (matrix < 0).any():
        raise CaffeError(f"{where}: entries must be finite and non-negative")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-6)
    if bad.size:
        raise CaffeError(f"{where}: row {bad[0]} sums to {sums[bad[0]]:.6g}, not 1 "
                         f"(row c is the distribution of the given label for true class c)")
    return matrix


def load_transition(path, classes=10):
    """A transition matrix from a .npy file, checked."""
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CaffeError(f"{path}: cannot read a .npy transition matrix: {exc}") from None
    return check_transition(matrix, classes, str(path))


def corrupt_labels(labels, transition, generator):
    """Each label replaced by a draw from its row of ``transition`` (one uniform each)."""
    labels = np.asarray(labels, dtype=np.int64)
    cumulative = np.cumsum(np.asarray(transition, dtype=np.float64), axis=1)
    cumulative[:, -1] = 1.0                       # rounding must not leave a gap at the top
    draws = generator.random(len(labels))
    return (draws[:, None] >= cumulative[labels]).sum(axis=1).astype(np.int64)


def expected_noise_rate(transition, class_counts):
    """The share of wrong labels the matrix gives a set with these true-class counts."""
    counts = np.asarray(class_counts, dtype=np.float64)
    return float(np.dot(counts, 1 - np.diag(transition)) / counts.sum())
