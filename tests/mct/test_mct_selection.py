"""Selection arithmetic of MCT: eqs. 1 and 2, confidences, global ranking, P_noise."""
import math

import numpy as np
import pytest
from scipy.stats import binom

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.mct import selection


@pytest.mark.parametrize("trials,success", [(1, 0.3), (10, 0.6), (128, 0.6), (64, 0.55),
                                            (3000, 0.45), (20, 1.0), (20, 0.0)])
def test_binomial_cdf_matches_scipy(trials, success):
    for m in list(range(-1, trials + 2, max(1, trials // 40))) + [trials - 1, trials]:
        assert selection.binomial_cdf(m, trials, success) == pytest.approx(
            binom.cdf(m, trials, success), rel=1e-9, abs=1e-300)


def _eq1_by_scipy(batch, noise, significance=0.01):
    below = np.flatnonzero(binom.cdf(np.arange(batch + 1), batch, 1 - noise) < significance)
    return int(below.max()) if below.size else 0


@pytest.mark.parametrize("batch", [1, 8, 32, 100, 256, 1000])
@pytest.mark.parametrize("noise", [0.0, 0.2, 0.4, 0.6, 0.9])
def test_eq1_matches_scipy(batch, noise):
    assert selection.aux_sample_count(batch, noise) == _eq1_by_scipy(batch, noise)


def test_eq1_guarantees_m_clean_with_99_percent():
    m = selection.aux_sample_count(128, 0.4)
    assert binom.sf(m - 1, 128, 0.6) > 0.99          # P(X >= M) > 99%
    assert binom.cdf(m + 1, 128, 0.6) >= 0.01        # M is the largest such m


@pytest.mark.parametrize("batch,noise,expected", [(100, 0.4, 60), (128, 0.4, 77),
                                                  (10, 0.0, 10), (7, 0.5, 4), (1, 0.99, 1)])
def test_eq2(batch, noise, expected):
    assert selection.primary_sample_count(batch, noise) == expected
    assert expected == min(batch, math.ceil(batch * (1 - noise) - 1e-9))


def test_counts_reject_noise_rate_outside_unit_interval():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(CaffeError, match=r"P_noise must be in \[0, 1\)"):
            selection.aux_sample_count(10, bad)
        with pytest.raises(CaffeError, match="P_noise"):
            selection.primary_sample_count(10, bad)


def test_ranking_breaks_ties_by_lower_index():
    confidence = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    assert list(selection.confidence_order(confidence)) == [1, 3, 0, 2, 4]
    assert list(selection.top_mask(confidence, 3)) == [1, 1, 0, 1, 0]


def test_masks_select_most_confident_and_primary_extends_aux():
    rng = np.random.default_rng(0)
    confidence = rng.random(64)
    mask_a, mask_p = selection.calibration_masks(confidence, 0.4)
    m, n = selection.aux_sample_count(64, 0.4), selection.primary_sample_count(64, 0.4)
    assert mask_a.sum() == m and mask_p.sum() == n and m < n
    assert np.all(mask_p >= mask_a)                     # M_p reaches further down
    assert confidence[mask_a == 1].min() > confidence[mask_a == 0].max()
    assert confidence[mask_p == 1].min() > confidence[mask_p == 0].max()


def test_noise_rate_estimated_from_two_label_lists(tmp_path):
    noisy = tmp_path / "noisy.txt"
    clean = tmp_path / "clean.txt"
    noisy.write_text("a.jpg 1\nb.jpg 2\nc.jpg 3\nd.jpg 0\nonly_noisy.jpg 5\n")
    clean.write_text("a.jpg 1\nb.jpg 0\nc.jpg 3\nd.jpg 1\nonly_clean.jpg 4\n")
    assert selection.estimate_noise_rate_from_lists(noisy, clean) == 0.5


def test_noise_rate_estimation_errors_name_file_and_line(tmp_path):
    noisy = tmp_path / "noisy.txt"
    clean = tmp_path / "clean.txt"
    noisy.write_text("a.jpg 1\nb.jpg two\n")
    clean.write_text("z.jpg 1\n")
    with pytest.raises(CaffeError, match=r"noisy.txt:2: expected 'path label'"):
        selection.estimate_noise_rate_from_lists(noisy, clean)
    noisy.write_text("a.jpg 1\n")
    with pytest.raises(CaffeError, match="no image has both"):
        selection.estimate_noise_rate_from_lists(noisy, clean)
    with pytest.raises(CaffeError, match="missing.txt: cannot read"):
        selection.estimate_noise_rate_from_lists(tmp_path / "missing.txt", clean)
