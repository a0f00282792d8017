"""Helpers of the convolution tests: a direct numpy convolution, random layer arrays, the
executor modes, and checks every convolution engine (im2col, Winograd) must pass."""
import numpy as np
import pytest

from pycaffe_mct.cg import accounting, ops, scheduler
from pycaffe_mct.cg.ops import convolution, winograd
from .op_helpers import rand

# Host threads of the fast executor, one object per count (each keeps its helper pool).
HOSTS = {count: scheduler.HostThreads(count) for count in (1, 2, 3)}


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


def calls_to(monkeypatch, module, names):
    """The set of ``module``'s functions among ``names`` called from now on (each still
    runs): a test's evidence that its convolutions took the engine it tests."""
    called = set()
    for name in names:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, real=real, name=name: (
            called.add(name), real(*args))[1])
    return called


def small_chunks(monkeypatch):
    """3 host threads and chunks of one or two images, so even small batches use lanes."""
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[3])
    monkeypatch.setattr(convolution, "CACHE_CHUNK_FLOATS", 1)
    monkeypatch.setattr(convolution, "MIN_CHUNK_COLUMNS", 1)
    monkeypatch.setattr(winograd, "CACHE_CHUNK_FLOATS", 1)
    monkeypatch.setattr(winograd, "MIN_CHUNK_TILES", 1)


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


def check_forward(shape, outputs, window):
    x, weight, dy = layer_arrays(shape, outputs, window)
    y = np.full(dy.shape, np.nan, np.float32)
    ops.convolve(x, weight, window, y=y)
    np.testing.assert_allclose(y, direct_conv(x, weight, window), rtol=1e-4, atol=1e-4)


def check_adjoints(shape, outputs, window):
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


def check_deconvolution_backward(shape, outputs, window):
    """Deconvolution's backward: one unfolding of x gives y and the weight gradient."""
    x, weight, dy = layer_arrays(shape, outputs, window)
    y, weight_diff = np.empty(dy.shape, np.float32), np.zeros(weight.shape, np.float32)
    ops.convolve(x, weight, window, y=y, top_diff=dy, weight_diff=weight_diff)
    expected = np.zeros(weight.shape, np.float32)
    ops.convolve_transpose(dy, weight, window, x=x, weight_diff=expected)
    np.testing.assert_allclose(weight_diff, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, direct_conv(x, weight, window), rtol=1e-4, atol=1e-4)


def check_weight_gradients_do_not_depend_on_the_thread_count(
        monkeypatch, shape=(13, 3, 6, 6), outputs=4, window=convolution.Window((3, 3), (1, 1))):
    """Per-run sums added in run order: 1 and 3 threads give the same bits."""
    for module, least in ((convolution, "MIN_CHUNK_COLUMNS"), (winograd, "MIN_CHUNK_TILES")):
        monkeypatch.setattr(module, "CACHE_CHUNK_FLOATS", 1)
        monkeypatch.setattr(module, least, 1)
    x, weight, dy = layer_arrays(shape, outputs, window)
    grads = []
    with scheduler.execution("fast"):
        for threads in (1, 3):
            monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[threads])
            weight_diff = np.zeros(weight.shape, np.float32)
            ops.convolve_transpose(dy, weight, window, x=x, weight_diff=weight_diff)
            grads.append(weight_diff)
    np.testing.assert_array_equal(grads[0], grads[1])
