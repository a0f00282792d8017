"""Softmax along channels, against numpy, bit-equal on both executors."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import both_modes, rand


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 13), (4, 1000, 1), (2, 3, 37)])
def test_softmax_along_inner_rows(shape):
    x = rand(*shape) * 10
    dy = rand(*shape)

    def run():
        out, dx = np.empty_like(x), np.empty_like(x)
        ops.softmax_forward(x, out)
        ops.softmax_backward(out, dy, dx)
        return out, dx
    out, dx = both_modes(run)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dx, (dy - (dy * out).sum(axis=1, keepdims=True)) * out,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 10, 1), (70, 7, 3)])
def test_softmax_matches_numpy(shape):
    x = rand(*shape) * 10
    out = np.full(shape, np.nan, np.float32)
    ops.softmax_forward(x, out)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    dy, dx = rand(*shape), np.full(shape, np.nan, np.float32)
    ops.softmax_backward(out, dy, dx)
    expected = (dy - (dy * out).sum(axis=1, keepdims=True)) * out
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-6)
