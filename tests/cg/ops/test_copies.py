"""Window copies (Crop, Concat, Slice) and the layers whose tops are copies on the core group."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import in_both_modes, rand, rng, run_recorded


@pytest.mark.usefixtures("literal_mode")
def test_crop_with_offsets_on_every_axis():
    x, offsets = rand(70, 3, 6), (5, 1, 2)
    out = np.full((40, 2, 3), np.nan, np.float32)
    ops.crop_forward(x, offsets, out)
    np.testing.assert_array_equal(out, x[5:45, 1:3, 2:5])
    dx = np.full_like(x, np.nan)
    ops.crop_backward(out, offsets, dx)
    expected = np.zeros_like(x)
    expected[5:45, 1:3, 2:5] = out
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_place_window_is_the_inverse_of_crop(axis):
    """Pieces placed along an axis rebuild the array; the rest of out is left alone."""
    x = rand(70, 5, 9)
    sizes = [x.shape[axis] // 2, x.shape[axis] - x.shape[axis] // 2]
    offsets = [(0,) * axis + (start,) + (0,) * (2 - axis) for start in (0, sizes[0])]

    def run():
        rebuilt = np.full_like(x, np.nan)
        for size, offset in zip(sizes, offsets):
            shape = list(x.shape)
            shape[axis] = size
            piece = np.empty(shape, np.float32)
            ops.crop_forward(x, offset, piece)
            ops.place_window(piece, offset, rebuilt)
        return rebuilt
    rebuilt, kernels = in_both_modes(run)
    np.testing.assert_array_equal(rebuilt, x)
    assert kernels == ["crop_forward", "place_window"] * 2


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
