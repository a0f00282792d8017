"""Reductions, MVN's row normalisation, Tile's gradient sum, within-channel LRN and Embed ops:
tile by tile (literal mode) they equal the whole-array run (fast mode) and plain numpy, on
awkward shapes, and the accounting records each call."""
import numpy as np
import pytest

from pycaffe_mct.cg import accounting, ops, scheduler

rng = np.random.default_rng(11)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def in_both_modes(run):
    """run() in literal and in fast mode; the literal result, checked equal to the fast one,
    and the kernel names the literal run recorded."""
    results = {}
    for mode in ("fast", "literal"):
        with scheduler.execution(mode), accounting.recording() as plans:
            results[mode] = run()
    for fast, literal in zip(np.atleast_1d(results["fast"]), np.atleast_1d(results["literal"])):
        np.testing.assert_allclose(literal, fast, rtol=1e-6, atol=1e-7)
    return results["literal"], [plan.kernel for plan in plans]


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


@pytest.mark.parametrize("shape", [(1, 1), (70, 9), (2, 30_001)])
def test_normalize_rows_matches_numpy(shape):
    x, mean, divisor = rand(*shape), rand(shape[0]), rng.random(shape[0]).astype(np.float32) + 0.5

    def run():
        out = np.full(shape, np.nan, np.float32)
        ops.normalize_rows(x, mean, divisor, out)
        return out
    out, kernels = in_both_modes(run)
    np.testing.assert_array_equal(out, (x - mean[:, None]) / divisor[:, None])
    assert kernels == ["normalize_rows"]


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


@pytest.mark.parametrize("shape,size", [((1, 1, 1, 1), 1), ((2, 3, 7, 5), 3), ((1, 70, 4, 9), 5)])
def test_lrn_within_channel_matches_numpy(shape, size):
    x, dy, alpha, beta = rand(*shape), rand(*shape), 0.7, 0.75
    pad = (size - 1) // 2
    squares = np.pad(x.astype(np.float64) ** 2, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    window = sum(squares[:, :, i:i + shape[2], j:j + shape[3]]
                 for i in range(size) for j in range(size))
    expected_scale = 1 + alpha * window / size ** 2

    def forward():
        scale, y = np.full_like(x, np.nan), np.full_like(x, np.nan)
        ops.lrn_within_forward(x, size, alpha, beta, scale, y)
        return scale, y
    (scale, y), kernels = in_both_modes(forward)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-5)
    np.testing.assert_allclose(y, x * expected_scale ** -beta, rtol=1e-5)
    assert "power_scaled" in kernels and "ave_pool_forward" in kernels

    def backward():
        dx = np.full_like(x, np.nan)
        ops.lrn_within_backward(x, y, scale, dy, size, alpha, beta, dx)
        return dx
    dx, kernels = in_both_modes(backward)
    # The adjoint of the average pooling (padding counted): spread each d_avg over its window.
    d_avg = np.pad(dy * y * (-alpha * beta) / scale / size ** 2, ((0, 0), (0, 0), (pad, pad),
                                                                  (pad, pad)))
    d_square = sum(d_avg[:, :, i:i + shape[2], j:j + shape[3]]
                   for i in range(size) for j in range(size))
    expected = dy * scale ** -beta + 2 * x * d_square
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-6)
    assert "lrn_within_backward" in kernels and "ave_pool_backward" in kernels


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
