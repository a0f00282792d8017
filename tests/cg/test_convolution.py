"""The convolution engine (cg/convolution.py): host lanes, host padding and the
core group's chunks all give a direct numpy convolution's results, and the
literal executor runs the fast one's chunks.

The reference convolves tap by tap on a zero-padded copy, with no im2col.
Lanes are forced (3 host threads, chunks of one or two images) so that even a
machine with one core runs chunks on several threads.
"""
import threading

import numpy as np
import pytest

from pycaffe_mct.cg import accounting, convolution, ops, scheduler

rng = np.random.default_rng(11)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def direct_conv(x, weight, window):
    """y[n, o] = sum over taps and the group's channels of weight * shifted padded x."""
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = (window.kernel, window.pad, window.stride,
                                              window.dilation)
    n, c, h, w = x.shape
    out_h, out_w = window.output_hw(h, w)
    o, per_group = weight.shape[0], c // window.group
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, o, out_h, out_w))
    for g in range(window.group):
        outs = slice(g * o // window.group, (g + 1) * o // window.group)
        ins = padded[:, g * per_group:(g + 1) * per_group]
        for ki in range(kh):
            for kj in range(kw):
                shifted = ins[:, :, ki * dh:ki * dh + sh * out_h:sh, kj * dw:kj * dw + sw * out_w:sw]
                y[:, outs] += np.einsum("ncij,oc->noij", shifted, weight[outs, :, ki, kj])
    return y


CASES = [  # x shape, out channels, window
    ((5, 3, 9, 7), 4, convolution.Window((3, 3), (1, 1))),
    ((4, 4, 10, 11), 6, convolution.Window((3, 2), (2, 1), (2, 3), (2, 1), group=2)),
    ((1, 2, 6, 6), 3, convolution.Window((2, 2))),
    ((6, 5, 4, 3), 7, convolution.Window((1, 1))),                   # pointwise
    ((3, 4, 8, 8), 2, convolution.Window((1, 1), stride=(2, 2))),
    ((7, 3, 5, 5), 2, convolution.Window((5, 5), (2, 2))),
]


def small_chunks(monkeypatch):
    """3 host threads and chunks of one or two images, so even small batches use lanes."""
    monkeypatch.setitem(scheduler._host, "threads", 3)
    monkeypatch.setattr(convolution, "CACHE_CHUNK_FLOATS", 1)
    monkeypatch.setattr(convolution, "MIN_CHUNK_COLUMNS", 1)


@pytest.fixture(params=["lanes", "literal", "core-group chunks"])
def mode(request, monkeypatch):
    """Host lanes on the fast executor, the same chunks tile by tile on the literal one,
    or the core group's chunks (as while accounting records)."""
    if request.param == "core-group chunks":
        with scheduler.execution("fast"), accounting.recording():
            yield request.param
        return
    small_chunks(monkeypatch)
    with scheduler.execution("fast" if request.param == "lanes" else "literal"):
        yield request.param


def layer_arrays(shape, outputs, window):
    x = rand(*shape)
    weight = rand(outputs, shape[1] // window.group, *window.kernel)
    out_hw = window.output_hw(*shape[2:])
    return x, weight, rand(shape[0], outputs, *out_hw)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_convolve_is_the_direct_convolution(mode, shape, outputs, window):
    x, weight, dy = layer_arrays(shape, outputs, window)
    y = np.full(dy.shape, np.nan, np.float32)
    ops.convolve(x, weight, window, y=y)
    np.testing.assert_allclose(y, direct_conv(x, weight, window), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_gradients_are_the_adjoints(mode, shape, outputs, window):
    """<dy, conv(dx_probe)> = <convolve_transpose(dy), dx_probe>, and the weight
    gradient is the derivative of <dy, conv(x, weight)> in weight (both linear)."""
    x, weight, dy = layer_arrays(shape, outputs, window)
    dx = np.full(x.shape, np.nan, np.float32)
    start = rand(*weight.shape)
    weight_diff = start.copy()
    ops.convolve_transpose(dy, weight, window, dx=dx, x=x, weight_diff=weight_diff)
    probe = rand(*x.shape)
    np.testing.assert_allclose((dx * probe).sum(dtype=np.float64),
                               (dy * direct_conv(probe, weight, window)).sum(), rtol=1e-4)
    expected = np.zeros(weight.shape)
    for index in np.ndindex(weight.shape):
        unit = np.zeros(weight.shape, np.float32)
        unit[index] = 1.0
        expected[index] = (dy * direct_conv(x, unit, window)).sum()
    np.testing.assert_allclose(weight_diff - start, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shape,outputs,window", CASES[:3])
def test_convolve_accumulates_a_weight_gradient_from_a_top_gradient(mode, shape, outputs,
                                                                     window):
    """Deconvolution's backward: one unfolding of x gives y and the weight gradient."""
    x, weight, dy = layer_arrays(shape, outputs, window)
    y, weight_diff = np.empty(dy.shape, np.float32), np.zeros(weight.shape, np.float32)
    ops.convolve(x, weight, window, y=y, top_diff=dy, weight_diff=weight_diff)
    expected = np.zeros(weight.shape, np.float32)
    ops.convolve_transpose(dy, weight, window, x=x, weight_diff=expected)
    np.testing.assert_allclose(weight_diff, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, direct_conv(x, weight, window), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("window", [CASES[1][2], CASES[5][2]])
def test_the_literal_executor_runs_the_fast_executors_chunks_and_padding(monkeypatch, window):
    small_chunks(monkeypatch)
    x, weight, dy = layer_arrays((5, 4, 10, 11), 6, window)
    calls = []
    for name in ("fast", "literal"):
        seen = []
        monkeypatch.setattr(scheduler, "lanes", lambda chunks, body, real=scheduler.lanes: (
            seen.append(list(chunks)), real(chunks, body))[1])
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
    monkeypatch.setitem(scheduler._host, "threads", 3)
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
    monkeypatch.setitem(scheduler._host, "threads", 2)
    done = []

    def body(lane, run, lo, hi):
        if lo == 0:
            raise ValueError("bad chunk")
        done.append(lo)
    with pytest.raises(ValueError, match="bad chunk"):
        scheduler.lanes([(lo, lo + 1) for lo in range(40)], body)
    assert len(done) <= 10               # 8 runs of 5: at most lane 1's run in progress


def test_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch, fast_mode):
    """Per-run sums added in run order: 1 and 3 threads give the same bits."""
    monkeypatch.setattr(convolution, "CACHE_CHUNK_FLOATS", 1)
    monkeypatch.setattr(convolution, "MIN_CHUNK_COLUMNS", 1)
    window = convolution.Window((3, 3), (1, 1))
    x, weight, dy = layer_arrays((13, 3, 6, 6), 4, window)
    grads = []
    for threads in (1, 3):
        monkeypatch.setitem(scheduler._host, "threads", threads)
        weight_diff = np.zeros(weight.shape, np.float32)
        ops.convolve_transpose(dy, weight, window, x=x, weight_diff=weight_diff)
        grads.append(weight_diff)
    np.testing.assert_array_equal(grads[0], grads[1])


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
