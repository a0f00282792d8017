"""Ranking and copies on the core group: ArgMax's top-k, the fill and dropout-mask ops, and
the layers that used to do these passes in numpy (ArgMax, Dropout at test time, Pooling's
mask top, Silence): tile by tile (literal) equals whole-array (fast) equals numpy, and the
accounting records each kernel."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer
from test_cg_reduce import in_both_modes
from pycaffe_mct.cg import accounting, kernels_rank, ops, scheduler
from pycaffe_mct.layer import TEST

rng = np.random.default_rng(5)


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
                                     ((2, 40, 3), kernels_rank.INSERTION_TOP_K + 4),
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


@pytest.mark.parametrize("k", [3, kernels_rank.INSERTION_TOP_K + 1])
def test_top_k_treats_signed_zeros_and_infinities_as_caffe_does(k):
    x = np.array([0.0, -0.0, np.inf, -np.inf, -0.0, 0.0, 1e-38, -1e-38] * 3,
                 np.float32).reshape(1, -1, 1)
    out = np.empty((1, 2, k, 1), np.float32)
    ops.top_k(x, k, True, True, out)
    indices, values = reference_top_k(x, k)
    np.testing.assert_array_equal(out[:, 0], indices)
    np.testing.assert_array_equal(out[:, 1], values)


def test_fill():
    def run():
        out = np.full((3, 5, 7), np.nan, np.float32)
        ops.fill(out, 0.0)
        return out
    out, kernels = in_both_modes(run)
    assert not out.any()
    assert kernels == ["fill"]


def test_dropout_mask():
    draws = rng.random((5, 13), dtype=np.float32)

    def run():
        mask = np.empty_like(draws)
        ops.pointwise("dropout_mask", mask, draws, ratio=np.float32(0.3),
                      scale=np.float32(1 / 0.7))
        return mask
    mask, kernels = in_both_modes(run)
    np.testing.assert_array_equal(mask, (draws >= np.float32(0.3)) * np.float32(1 / 0.7))
    assert kernels == ["dropout_mask"]


def run_recorded(layer_text, *arrays, tops=1, phase=TEST, backward=False):
    """Set up, forward (and backward with diffs 1..n) one layer in literal mode, recording:
    (bottoms, tops, kernel names of the forward and backward passes)."""
    layer = make_layer(layer_text, phase)
    bottoms, top_blobs = blobs_from(*arrays), empty_tops(tops)
    layer.setup(bottoms, top_blobs)
    with scheduler.execution("literal"), accounting.recording() as plans:
        layer.forward(bottoms, top_blobs)
        if backward:
            for top in top_blobs:
                top.diff[...] = np.arange(top.count).reshape(top.shape)
            for bottom in bottoms:
                bottom.diff[...] = np.nan
            layer.backward(top_blobs, [True] * len(bottoms), bottoms)
    return bottoms, top_blobs, [plan.kernel for plan in plans]


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


def test_dropout_at_test_time_copies_on_the_core_group():
    x = rng.standard_normal((3, 5)).astype(np.float32)
    bottoms, tops, kernels = run_recorded('type: "Dropout"', x, backward=True)
    np.testing.assert_array_equal(tops[0].data, x)
    np.testing.assert_array_equal(bottoms[0].diff, np.arange(15).reshape(3, 5))
    assert kernels == ["copy", "copy"]


def test_pooling_mask_top_is_copied_on_the_core_group():
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    _, tops, kernels = run_recorded(
        'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }', x, tops=2)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    offsets = windows.reshape(2, 3, 2, 2, 9).argmax(axis=-1)
    rows = np.arange(2)[:, None] * 2 + offsets // 3
    cols = np.arange(2)[None, :] * 2 + offsets % 3
    np.testing.assert_array_equal(tops[1].data, rows * 5 + cols)
    assert kernels == ["max_pool_forward", "copy"]


def test_silence_hands_back_a_zero_gradient_from_the_core_group():
    bottoms, _, kernels = run_recorded('type: "Silence"', np.ones((2, 3)), np.ones(4), tops=0,
                                       backward=True)
    assert all(not blob.diff.any() for blob in bottoms)
    assert kernels == ["fill", "fill"]
