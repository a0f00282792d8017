"""Convolution: im2col/col2im against numpy, their fine units, and the convolution engine
(host lanes, host padding and the core group's chunks all give a direct numpy convolution's
results, and the literal executor runs the fast one's chunks)."""
import threading

import numpy as np
import pytest

from pycaffe_mct.cg import accounting, ops, scheduler
from pycaffe_mct.cg.ops import convolution
from .conv_helpers import (  # noqa: F401 (mode: a fixture)
    HOSTS, check_adjoints, check_deconvolution_backward, check_forward,
    check_weight_gradients_do_not_depend_on_the_thread_count, layer_arrays, mode, small_chunks)
from .op_helpers import in_both_modes, rand

CASES = [  # x shape, out channels, window
    ((5, 3, 9, 7), 4, convolution.Window((3, 3), (1, 1))),
    ((4, 4, 10, 11), 6, convolution.Window((3, 2), (2, 1), (2, 3), (2, 1), group=2)),
    ((1, 2, 6, 6), 3, convolution.Window((2, 2))),
    ((6, 5, 4, 3), 7, convolution.Window((1, 1))),                   # pointwise
    ((3, 4, 8, 8), 2, convolution.Window((1, 1), stride=(2, 2))),
    ((7, 3, 5, 5), 2, convolution.Window((5, 5), (2, 2))),
]


@pytest.fixture(params=["transposed sums", "direct sums"])
def sums(request, monkeypatch):
    """Weight gradients summed as their transpose wherever R > O/G, or never."""
    threshold = 0 if request.param == "transposed sums" else 1 << 62
    monkeypatch.setattr(convolution, "TRANSPOSED_SUM_COLUMNS", threshold)
    return request.param


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_convolve_is_the_direct_convolution(mode, shape, outputs, window):
    check_forward(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_gradients_are_the_adjoints(mode, sums, shape, outputs, window):
    check_adjoints(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES[:3])
def test_convolve_accumulates_a_weight_gradient_from_a_top_gradient(mode, sums, shape, outputs,
                                                                     window):
    check_deconvolution_backward(shape, outputs, window)


@pytest.mark.parametrize("window", [CASES[1][2], CASES[5][2]])
def test_the_literal_executor_runs_the_fast_executors_chunks_and_padding(monkeypatch, window):
    small_chunks(monkeypatch)
    x, weight, dy = layer_arrays((5, 4, 10, 11), 6, window)
    calls = []
    for name in ("fast", "literal"):
        seen = []
        monkeypatch.setattr(scheduler, "lanes", lambda chunks, body, *runs, real=scheduler.lanes: (
            seen.append(list(chunks)), real(chunks, body, *runs))[1])
        monkeypatch.setattr(convolution, "_padded", lambda *args, real=convolution._padded: (
            seen.append("padded"), real(*args))[1])
        with scheduler.execution(name):
            ops.convolve(x, weight, window, y=np.empty(dy.shape, np.float32))
        monkeypatch.undo()
        small_chunks(monkeypatch)
        calls.append(seen)
    assert calls[0] == calls[1]
    assert len(calls[0][0]) > 1 and "padded" in calls[0]


@pytest.fixture
def fast_mode():
    with scheduler.execution("fast"):
        yield


def test_lanes_take_every_run_once_each_lane_on_one_thread(monkeypatch, fast_mode):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[3])
    seen = []
    chunks = [(lo, lo + 1) for lo in range(19)]
    scheduler.lanes(chunks, lambda lane, run, lo, hi: seen.append(
        (lane, run, lo, threading.get_ident(), scheduler._in_lane())))
    assert sorted(lo for _, _, lo, _, _ in seen) == list(range(19))
    runs = {}
    for _, run, lo, _, _ in seen:
        runs.setdefault(run, []).append(lo)
    assert sorted(runs) == list(range(scheduler.RUNS))
    # Runs are contiguous, in order, and done in order within a run.
    assert [lo for run in sorted(runs) for lo in runs[run]] == list(range(19))
    threads_of = {}
    for lane, _, _, thread, inside in seen:
        assert inside
        threads_of.setdefault(lane, set()).add(thread)
    assert all(len(t) == 1 for t in threads_of.values())
    assert threads_of[0] == {threading.get_ident()}          # lane 0 is the caller
    assert not scheduler._in_lane()


def test_a_failing_chunk_stops_the_lanes_and_raises(monkeypatch, fast_mode):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[2])
    done = []

    def body(lane, run, lo, hi):
        if lo == 0:
            raise ValueError("bad chunk")
        done.append(lo)
    with pytest.raises(ValueError, match="bad chunk"):
        scheduler.lanes([(lo, lo + 1) for lo in range(40)], body)
    assert len(done) <= 10               # 8 runs of 5: at most lane 1's run in progress


def test_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch, sums):
    check_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch)


@pytest.mark.parametrize("images,step,threads,sizes", [
    (8, 3, 2, [2, 2, 2, 2]),            # 3 chunks of 3 would keep one of two lanes busy with 6
    (8, 4, 2, [4, 4]),
    (5, 2, 2, [1, 1, 1, 2]),
    (13, 1, 3, [1] * 13),               # more chunks than runs: as they come
    (1, 1, 2, [1]),
])
def test_chunks_are_even_and_a_multiple_of_the_lanes(monkeypatch, images, step, threads, sizes):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[threads])
    chunks = scheduler.balanced_chunks(images, step)
    assert [hi - lo for lo, hi in chunks] == sizes
    assert chunks[0][0] == 0 and chunks[-1][1] == images
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))


def test_large_weight_gradient_sums_take_one_run_per_thread(monkeypatch, fast_mode):
    """Runs keep a weight-gradient sum each: large ones get as few runs as host threads."""
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[2])
    assert scheduler.weight_sum_runs(scheduler.LARGE_RUN_SUM_FLOATS) == 2
    assert scheduler.weight_sum_runs(scheduler.LARGE_RUN_SUM_FLOATS - 1) == scheduler.RUNS
    seen = set()
    lock = threading.Lock()

    def body(lane, run, lo, hi):
        with lock:
            seen.add((run, lo))
    scheduler.lanes([(lo, lo + 1) for lo in range(10)], body, 2)
    assert {run for run, _ in seen} == {0, 1}
    assert sorted(lo for _, lo in seen) == list(range(10))


def test_planning_uses_the_core_groups_chunks():
    """Accounting sees the same GEMM plans as before the host lanes: few, large chunks."""
    from pycaffe_mct.cg import accounting
    window = convolution.Window((3, 3), (1, 1))
    x, weight, _ = layer_arrays((20, 8, 12, 12), 16, window)
    y = np.empty((20, 16, 12, 12), np.float32)
    with accounting.recording() as plans:
        ops.convolve(x, weight, window, y=y)
    gemms = [p for p in plans if p.kernel == "gemm"]
    assert len(gemms) == 1                      # 20 images' columns fit one MPE chunk
    assert {p.kernel for p in plans} == {"gemm", "im2col"}


def reference_im2col(x, kernel, pad, stride, dilation):
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out_h = ops.conv_out_size(h, kernel[0], pad[0], stride[0], dilation[0])
    out_w = ops.conv_out_size(w, kernel[1], pad[1], stride[1], dilation[1])
    cols = np.empty((c, kernel[0], kernel[1], n, out_h, out_w), np.float32)
    for ki in range(kernel[0]):
        for kj in range(kernel[1]):
            y0, x0 = ki * dilation[0], kj * dilation[1]
            window = padded[:, :, y0:y0 + stride[0] * out_h:stride[0],
                            x0:x0 + stride[1] * out_w:stride[1]]
            cols[:, ki, kj] = window.transpose(1, 0, 2, 3)
    return cols.reshape(c * kernel[0] * kernel[1], n * out_h * out_w)


CONV_CASES = [  # x shape, kernel, pad, stride, dilation
    ((1, 1, 1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),
    ((2, 3, 7, 9), (3, 2), (1, 0), (2, 1), (1, 1)),
    ((1, 300, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 2, 11, 10), (3, 3), (2, 2), (1, 3), (2, 2)),
]


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CONV_CASES)
def test_im2col_matches_numpy(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    expected = reference_im2col(x, kernel, pad, stride, dilation)
    cols = np.full(expected.shape, np.nan, np.float32)
    ops.im2col(x, kernel, pad, stride, dilation, cols)
    np.testing.assert_array_equal(cols, expected)


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, pad, stride, dilation):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: checked for random ones."""
    x = rand(*shape)
    cols = rand(*reference_im2col(x, kernel, pad, stride, dilation).shape)
    dx = np.full(shape, np.nan, np.float32)
    ops.col2im(cols, kernel, pad, stride, dilation, dx)
    left = float((reference_im2col(x, kernel, pad, stride, dilation) * cols).sum(dtype=np.float64))
    assert float((x * dx).sum(dtype=np.float64)) == pytest.approx(left, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("images", [1, 3, 5])
def test_unit_blocks_cover_each_unit_once_in_order(images):
    for lo in range(0, 4 * images + 1):
        for hi in range(lo, 4 * images + 1):
            units = [outer * images + n
                     for outer_lo, outer_hi, n_lo, n_hi in convolution._unit_blocks(lo, hi, images)
                     for outer in range(outer_lo, outer_hi) for n in range(n_lo, n_hi)]
            assert units == list(range(lo, hi))


UNIT_CASES = [  # x shape, kernel, pad, stride, dilation: tiles end inside a row's images
    ((7, 3, 6, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((5, 2, 9, 8), (2, 3), (1, 0), (2, 1), (1, 2)),
    ((1, 1, 1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", UNIT_CASES)
def test_im2col_by_row_and_image(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    expected = reference_im2col(x, kernel, pad, stride, dilation)

    def run():
        cols = np.full(expected.shape, np.nan, np.float32)
        ops.im2col(x, kernel, pad, stride, dilation, cols)
        return cols
    cols, kernels = in_both_modes(run)
    np.testing.assert_array_equal(cols, expected)
    assert kernels == ["im2col"]


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", UNIT_CASES)
def test_col2im_by_channel_and_image(shape, kernel, pad, stride, dilation):
    x = rand(*shape)
    cols = rand(*reference_im2col(x, kernel, pad, stride, dilation).shape)

    def run():
        dx = np.full(shape, np.nan, np.float32)
        ops.col2im(cols, kernel, pad, stride, dilation, dx)
        return dx
    dx, kernels = in_both_modes(run)
    # The adjoint of im2col: <im2col(x), cols> == <x, col2im(cols)>.
    left = float((reference_im2col(x, kernel, pad, stride, dilation) * cols).sum(dtype=np.float64))
    assert float((x * dx).sum(dtype=np.float64)) == pytest.approx(left, rel=1e-4, abs=1e-3)
    assert kernels == ["col2im"]


def test_lenet_conv1_unfolding_and_bias_gradient_use_the_whole_mesh():
    """conv1: 25 column rows and 20 channels were 25 and 20 units for 64 CPEs."""
    x, dy = rand(64, 1, 28, 28), rand(64, 20, 576)
    cols = np.empty((25, 64 * 576), np.float32)
    with scheduler.execution("literal"), scheduler.accounting.recording() as plans:
        ops.im2col(x, (5, 5), (0, 0), (1, 1), (1, 1), cols)
        ops.accumulate_channel_bias_grad(dy, np.zeros(20, np.float32))
    imbalance = {plan.kernel: plan.imbalance() for plan in plans}
    assert imbalance["im2col"] < 1.05
    assert imbalance["bias_backward"] < 1.05
