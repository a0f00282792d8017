"""Row reductions and Tile's gradient sum against numpy on both executors."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import in_both_modes, rand


@pytest.mark.parametrize("operation", ["sum", "asum", "sumsq", "mean"])
@pytest.mark.parametrize("shape", [(1, 1), (70, 3), (3, 50_001)])
def test_row_reduce_and_its_gradient_match_numpy(operation, shape):
    x, dy = rand(*shape), rand(shape[0])
    x[0, 0] = 0.0                                  # sign(0) = 0 in ASUM's gradient

    def forward():
        out = np.full(shape[0], np.nan, np.float32)
        ops.row_reduce(x, operation, 1.5, out)
        return out
    out, kernels = in_both_modes(forward)
    x64 = x.astype(np.float64)
    term = {"sum": x64, "asum": np.abs(x64), "sumsq": x64 ** 2, "mean": x64 / shape[1]}
    np.testing.assert_allclose(out, 1.5 * term[operation].sum(axis=1), rtol=1e-5, atol=1e-6)
    assert kernels == ["reduce_" + operation]

    def backward():
        dx = np.full(shape, np.nan, np.float32)
        ops.row_reduce_backward(x, dy, operation, 1.5, dx)
        return dx
    dx, kernels = in_both_modes(backward)
    local = {"sum": np.ones_like(x), "asum": np.sign(x), "sumsq": 2 * x,
             "mean": np.full_like(x, 1 / shape[1])}
    np.testing.assert_allclose(dx, 1.5 * dy[:, None] * local[operation], rtol=1e-5, atol=1e-9)
    assert kernels == ["reduce_" + operation + "_backward"]


@pytest.mark.parametrize("shape", [(1, 1, 1), (70, 3, 5), (2, 1, 40_000), (3, 9, 7)])
def test_tile_sum_matches_numpy(shape):
    dy = rand(*shape)

    def run():
        dx = np.full((shape[0], shape[2]), np.nan, np.float32)
        ops.tile_sum(dy, dx)
        return dx
    dx, kernels = in_both_modes(run)
    np.testing.assert_allclose(dx, dy.sum(axis=1), rtol=1e-5, atol=1e-6)
    assert kernels == ["tile_sum"]
