"""Label noise models as transition matrices, and drawing labels from them."""
import numpy as np
import pytest

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.mct.noise_models import (check_transition, corrupt_labels,
                                          expected_noise_rate, load_transition,
                                          noise_transition)


def test_pairflip_moves_each_class_to_the_next():
    labels = np.arange(10).repeat(100)
    moved = corrupt_labels(labels, noise_transition("pairflip", 1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(moved, (labels + 1) % 10)


def test_symmetric_noise_never_keeps_a_flipped_label_and_reaches_all_others():
    labels = np.zeros(2000, dtype=np.int64)
    moved = corrupt_labels(labels, noise_transition("symmetric", 1.0), np.random.default_rng(0))
    assert set(moved.tolist()) == set(range(1, 10))


def test_asymmetric_mnist_flips_move_only_their_classes():
    matrix = noise_transition("asymmetric", 0.4)
    for source, target in {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}.items():
        assert matrix[source, source] == pytest.approx(0.6)
        assert matrix[source, target] == pytest.approx(0.4)
    for kept in (0, 1, 4, 8, 9):
        assert matrix[kept, kept] == 1
    assert expected_noise_rate(matrix, np.ones(10)) == pytest.approx(0.2)


def test_drawn_labels_follow_the_matrix_rows():
    matrix = noise_transition("symmetric", 0.3)
    matrix[4] = [0, 0.1, 0, 0, 0.5, 0, 0, 0, 0.4, 0]
    labels = np.full(20000, 4)
    counts = np.bincount(corrupt_labels(labels, matrix, np.random.default_rng(1)), minlength=10)
    np.testing.assert_allclose(counts / len(labels), matrix[4], atol=0.01)


def test_bad_matrices_are_refused(tmp_path):
    with pytest.raises(CaffeError, match="expected a 10x10 matrix"):
        check_transition(np.eye(9), 10)
    with pytest.raises(CaffeError, match="non-negative"):
        check_transition(np.eye(10) * 2 - 0.5, 10)
    with pytest.raises(CaffeError, match="cannot read a .npy"):
        load_transition(tmp_path / "missing.npy")
    with pytest.raises(CaffeError, match="unknown noise type 'gaussian'"):
        noise_transition("gaussian", 0.2)
    with pytest.raises(CaffeError, match="rate 1.5 is not in"):
        noise_transition("symmetric", 1.5)
