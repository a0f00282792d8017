"""Embed's gather and scatter-add against numpy on both executors."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import in_both_modes, rand, rng


@pytest.mark.parametrize("rows,width,count", [(1, 1, 1), (9, 70, 5), (70, 3, 300)])
def test_embed_gather_and_scatter_add_match_numpy(rows, width, count):
    weight, bias = rand(rows, width), rand(width)
    indices = rng.integers(0, rows, count)
    dy = rand(count, width)

    def forward():
        out = np.full((count, width), np.nan, np.float32)
        ops.embed_forward(weight, indices, bias, out)
        plain = np.full((count, width), np.nan, np.float32)
        ops.embed_forward(weight, indices, None, plain)
        return out, plain
    (out, plain), kernels = in_both_modes(forward)
    np.testing.assert_array_equal(plain, weight[indices])
    np.testing.assert_array_equal(out, weight[indices] + bias)
    assert kernels == ["embed_forward", "embed_forward"]

    start = rand(rows, width)

    def backward():
        dweight = start.copy()
        ops.embed_accumulate_weight_grad(dy, indices, dweight)
        return dweight
    dweight, kernels = in_both_modes(backward)
    expected = start.copy()
    np.add.at(expected, indices, dy)
    np.testing.assert_allclose(dweight, expected, rtol=1e-5, atol=1e-6)
    assert kernels == ["embed_weight_grad"]
