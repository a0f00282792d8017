"""Fillers: shapes and statistics of each type, Caffe's fan definitions, exact bilinear values."""
import numpy as np
import pytest

from pycaffe_mct import rng
from pycaffe_mct.blob import Blob
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.fillers import fill
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import parse_prototxt


def filled(text, shape, seed=0):
    rng.set_random_seed(seed)
    blob = Blob(shape)
    fill(blob, parse_prototxt(text, caffe_pb2.FillerParameter()))
    return blob.data.astype(np.float64)


def test_constant():
    np.testing.assert_array_equal(filled('type: "constant" value: 2.5', (3, 4)), 2.5)
    np.testing.assert_array_equal(filled("", (2,)), 0)          # Caffe's default filler


def test_uniform():
    values = filled('type: "uniform" min: -2 max: 3', (100, 100))
    assert values.min() >= -2 and values.max() <= 3
    assert values.mean() == pytest.approx(0.5, abs=0.05)
    assert values.var() == pytest.approx(25 / 12, rel=0.05)


def test_gaussian():
    values = filled('type: "gaussian" mean: 1 std: 2', (200, 100))
    assert values.mean() == pytest.approx(1, abs=0.05)
    assert values.std() == pytest.approx(2, rel=0.03)


def test_sparse_gaussian_keeps_sparse_over_outputs_of_the_weights():
    # Caffe: each weight is kept with probability sparse / num_outputs (shape[0]).
    values = filled('type: "gaussian" std: 1 sparse: 5', (20, 1000))
    assert (values != 0).mean() == pytest.approx(5 / 20, abs=0.01)


def test_positive_unitball_rows_sum_to_one():
    values = filled('type: "positive_unitball"', (4, 3, 2, 2))
    assert (values >= 0).all()
    np.testing.assert_allclose(values.reshape(4, -1).sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("norm,fan", [("FAN_IN", 3 * 5 * 5), ("FAN_OUT", 40 * 5 * 5),
                                      ("AVERAGE", (3 * 25 + 40 * 25) / 2)])
def test_xavier(norm, fan):
    values = filled(f'type: "xavier" variance_norm: {norm}', (40, 3, 5, 5))
    scale = np.sqrt(3 / fan)
    assert np.abs(values).max() <= scale
    assert values.var() == pytest.approx(scale ** 2 / 3, rel=0.08)


@pytest.mark.parametrize("norm,fan", [("FAN_IN", 6 * 9), ("FAN_OUT", 50 * 9),
                                      ("AVERAGE", (6 * 9 + 50 * 9) / 2)])
def test_msra(norm, fan):
    values = filled(f'type: "msra" variance_norm: {norm}', (50, 6, 3, 3))
    assert values.mean() == pytest.approx(0, abs=0.02)
    assert values.std() == pytest.approx(np.sqrt(2 / fan), rel=0.05)


def test_fan_of_a_one_axis_blob():
    values = filled('type: "xavier"', (10000,))     # fan_in = count / shape[0] = 1
    assert np.abs(values).max() <= np.sqrt(3) and np.abs(values).max() > 1.6


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_bilinear_exact_values(size):
    f = int(np.ceil(size / 2))
    c = (size - 1) / (2 * f)                         # Caffe's BilinearFiller centre
    expected = np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(size)]
                         for y in range(size)], dtype=np.float32)
    values = filled('type: "bilinear"', (2, 3, size, size))
    np.testing.assert_allclose(values, np.broadcast_to(expected, (2, 3, size, size)),
                               rtol=1e-6, atol=1e-7)


def test_bilinear_4x4_upsampling_kernel():
    row = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(filled('type: "bilinear"', (1, 1, 4, 4))[0, 0],
                               np.outer(row, row), rtol=1e-6)


def test_same_seed_same_values():
    first = filled('type: "gaussian"', (5, 5), seed=3)
    np.testing.assert_array_equal(first, filled('type: "gaussian"', (5, 5), seed=3))
    assert not np.array_equal(first, filled('type: "gaussian"', (5, 5), seed=4))


@pytest.mark.parametrize("text,message", [
    ('type: "nonsense"', "unknown filler type 'nonsense'"),
    ('type: "bilinear"', "bilinear filler needs a 4-axis blob"),
    ('type: "xavier" sparse: 3', "does not support sparse"),
])
def test_bad_fillers(text, message):
    with pytest.raises(CaffeError, match=message):
        filled(text, (2, 3))
