"""Helpers of the op tests: random data, runs on both executors, layers run while recording."""
import numpy as np

from layer_helpers import blobs_from, empty_tops, make_layer
from pycaffe_mct.cg import accounting, scheduler
from pycaffe_mct.layer import TEST


rng = np.random.default_rng(11)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def both_modes(run):
    """run() in fast and in literal mode; asserts equal results and returns one."""
    with scheduler.execution("fast"):
        fast = run()
    with scheduler.execution("literal"):
        literal = run()
    for a, b in zip(fast, literal):
        np.testing.assert_array_equal(a, b)
    return fast


def in_both_modes(run, rtol=1e-6, atol=1e-7):
    """run() in literal and in fast mode; the literal result, checked equal to the fast one
    (to ``rtol``/``atol``), and the kernel names the literal run recorded."""
    results = {}
    for mode in ("fast", "literal"):
        with scheduler.execution(mode), accounting.recording() as plans:
            results[mode] = run()
    for fast, literal in zip(np.atleast_1d(results["fast"]), np.atleast_1d(results["literal"])):
        np.testing.assert_allclose(literal, fast, rtol=rtol, atol=atol)
    return results["literal"], [plan.kernel for plan in plans]


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
