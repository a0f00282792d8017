"""ArgMax's top-k ranking, by Caffe's rule, on both executors and in the layer."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from pycaffe_mct.cg.ops import ranking
from .op_helpers import in_both_modes, rng, run_recorded


def reference_top_k(x, k):
    """Caffe's ranking of each column of x (outer, length, inner), by a plain Python sort
    of (value, index) pairs, descending: (indices, values), each (outer, k, inner)."""
    outer, length, inner = x.shape
    indices = np.empty((outer, k, inner), np.int64)
    for o in range(outer):
        for j in range(inner):
            ranked = sorted(((x[o, i, j], i) for i in range(length)), reverse=True)[:k]
            indices[o, :, j] = [i for _, i in ranked]
    return indices, np.take_along_axis(x, indices, axis=1)


def ties(*shape):
    """Small integers as floats, so many values are equal."""
    return rng.integers(-3, 3, shape).astype(np.float32)


@pytest.mark.parametrize("shape,k", [((1, 1, 1), 1), ((3, 7, 5), 1), ((3, 7, 5), 7),
                                     ((2, 40, 3), ranking.INSERTION_TOP_K + 4),
                                     ((70, 9, 1), 3)])
@pytest.mark.parametrize("flags", [(True, False), (False, True), (True, True)])
def test_top_k_ranks_like_caffe(shape, k, flags):
    x = ties(*shape)
    write_indices, write_values = flags

    def run():
        out = np.full((shape[0], sum(flags), k, shape[2]), np.nan, np.float32)
        ops.top_k(x, k, write_indices, write_values, out)
        return out
    out, kernels = in_both_modes(run)
    indices, values = reference_top_k(x, k)
    expected = ([indices] if write_indices else []) + ([values] if write_values else [])
    np.testing.assert_array_equal(out, np.stack(expected, axis=1))
    assert kernels == ["top_k"]


@pytest.mark.parametrize("k", [3, ranking.INSERTION_TOP_K + 1])
def test_top_k_treats_signed_zeros_and_infinities_as_caffe_does(k):
    x = np.array([0.0, -0.0, np.inf, -np.inf, -0.0, 0.0, 1e-38, -1e-38] * 3,
                 np.float32).reshape(1, -1, 1)
    out = np.empty((1, 2, k, 1), np.float32)
    ops.top_k(x, k, True, True, out)
    indices, values = reference_top_k(x, k)
    np.testing.assert_array_equal(out[:, 0], indices)
    np.testing.assert_array_equal(out[:, 1], values)


@pytest.mark.parametrize("options,axis", [("top_k: 3", None), ("top_k: 2 out_max_val: true",
                                                                None),
                                          ("axis: 1 top_k: 2", 1),
                                          ("axis: -1 top_k: 4 out_max_val: true", 2)])
def test_argmax_layer_ranks_on_the_core_group(options, axis):
    x = ties(3, 5, 4)
    _, tops, kernels = run_recorded(f'type: "ArgMax" argmax_param {{ {options} }}', x)
    assert kernels == ["top_k"]
    k = int(options.split("top_k: ")[1].split()[0])
    if axis is None:
        indices, values = reference_top_k(x.reshape(3, -1, 1), k)
        expected = [indices[..., 0]] + ([values[..., 0]] if "out_max_val" in options else [])
        np.testing.assert_array_equal(tops[0].data.reshape(3, -1, k), np.stack(expected, 1))
    else:
        view = x.reshape(int(np.prod(x.shape[:axis])), x.shape[axis], -1)
        indices, values = reference_top_k(view, k)
        expected = values if "out_max_val" in options else indices
        np.testing.assert_array_equal(tops[0].data.reshape(expected.shape), expected)
