"""Softmax over axis 1 of (outer, channels, inner) arrays: ops and numba kernels.

A unit is one outer index.  Classifier rows (inner 1) have kernels of their
own, serial ones, summed row by row, which the scheduler spreads over the host
threads when the batch is large (a ``parallel=True`` kernel took several times
as long to compile, and most nets have only these).  Otherwise blocks of inner
positions are processed channel by channel, so the innermost loop runs along
contiguous memory and vectorises, in parallel over the blocks: a single
image's spatial softmax still spreads over the threads.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def softmax_forward(x, out):
    """Softmax over axis 1 of (outer, channels, inner) arrays."""
    per_outer = x.shape[1] * x.shape[2]
    scheduler.units("softmax_forward", x.shape[0], per_outer * x.itemsize,
                    per_outer * out.itemsize, 4 * per_outer,
                    lambda lo, hi: _softmax_outer(x, out, lo, hi), spread=x.shape[2] == 1)


def _softmax_outer(x, out, lo, hi):
    """Softmax of outer lo..hi: max-subtract and normalise in numba, the exponential in numpy."""
    flat = out.reshape(-1)
    if x.shape[2] == 1:
        row_shift_kernel(x.reshape(-1), flat, x.shape[1], lo, hi)
    else:
        softmax_shift_kernel(x, out, lo, hi)
    np.exp(out[lo:hi], out=out[lo:hi])
    _rescale(flat, None, flat, out.shape[1], out.shape[2], lo, hi)


def softmax_backward(y, dy, dx):
    per_outer = y.shape[1] * y.shape[2]
    prob, grad, target = y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    scheduler.units("softmax_backward", y.shape[0], 2 * per_outer * y.itemsize,
                    per_outer * dx.itemsize, 4 * per_outer,
                    lambda lo, hi: _rescale(prob, grad, target, y.shape[1], y.shape[2], lo, hi),
                    spread=y.shape[2] == 1)


def _rescale(prob, grad, target, channels, inner, lo, hi):
    """softmax_rescale_kernel's step, by row_rescale_kernel for classifier rows."""
    if inner == 1:
        row_rescale_kernel(prob, grad, target, channels, lo, hi)
    else:
        softmax_rescale_kernel(prob, grad, target, channels, inner, lo, hi)


# Softmax works on blocks of at most this many inner positions, so that a single
# image's spatial softmax still spreads over the threads.
_SOFTMAX_BLOCK = 2048


@numba.njit(inline="always")
def _softmax_block(task, lo, channels, inner):
    """(offset of channel 0, length) of the task-th block of inner positions of outer lo..."""
    blocks = (inner + _SOFTMAX_BLOCK - 1) // _SOFTMAX_BLOCK
    o, block = lo + task // blocks, task % blocks
    first = block * _SOFTMAX_BLOCK
    return U(o * channels * inner + first), U(min(inner - first, _SOFTMAX_BLOCK))


@numba.njit(inline="always")
def _softmax_tasks(lo, hi, inner):
    return (hi - lo) * ((inner + _SOFTMAX_BLOCK - 1) // _SOFTMAX_BLOCK)


@numba.njit
def _channel_totals(values, weights, base, span, channels, inner):
    """float64 sums over channels of values (times weights, unless None) at a block of
    inner positions; numba compiles the None case without the product."""
    totals = np.zeros(span, np.float64)
    for c in range(channels):
        row = base + U(c * inner)
        for i in range(span):
            if weights is None:
                totals[i] += values[row + i]
            else:
                totals[i] += values[row + i] * weights[row + i]
    return totals


@numba.njit
def _row_total(values, weights, base, channels):
    """float64 sum over the channels of one contiguous row of values (times weights,
    unless None): _channel_totals for a row with one inner position."""
    total = 0.0
    for c in range(U(channels)):
        if weights is None:
            total += values[base + c]
        else:
            total += values[base + c] * weights[base + c]
    return total


@numba.njit(**JIT)
def row_shift_kernel(src, dst, channels, lo, hi):
    """softmax_shift_kernel for classifier outputs (inner 1): contiguous rows of flat
    arrays."""
    for o in range(lo, hi):
        base = U(o * channels)
        top = src[base]
        for c in range(U(1), U(channels)):
            top = max(top, src[base + c])
        for c in range(U(channels)):
            dst[base + c] = src[base + c] - top


@numba.njit(parallel=True, **JIT)
def softmax_shift_kernel(x, out, lo, hi):
    """out = x minus its maximum over axis 1 of (outer, channels, inner), for outer lo..hi.

    The first step of Caffe's softmax; out may be x.  The exponential is left
    to the caller (numpy's is vectorised, numba's is one call per element).
    """
    _, channels, inner = x.shape
    src, dst = x.reshape(-1), out.reshape(-1)
    for task in numba.prange(_softmax_tasks(lo, hi, inner)):
        base, span = _softmax_block(task, lo, channels, inner)
        top = np.empty(span, np.float32)
        for i in range(span):
            top[i] = src[base + i]
        for c in range(1, channels):
            row = base + U(c * inner)
            for i in range(span):
                top[i] = max(top[i], src[row + i])
        for c in range(channels):
            row = base + U(c * inner)
            for i in range(span):
                dst[row + i] = src[row + i] - top[i]


@numba.njit
def _rescaled(prob, grad, index, total):
    """One output of softmax_rescale_kernel: prob / total, or (grad - total) * prob."""
    if grad is None:
        return prob[index] / total
    return (grad[index] - total) * prob[index]


@numba.njit(**JIT)
def row_rescale_kernel(prob, grad, target, channels, lo, hi):
    """softmax_rescale_kernel for classifier outputs (inner 1): contiguous rows."""
    for o in range(lo, hi):
        base = U(o * channels)
        total = _row_total(prob, grad, base, channels)
        for c in range(U(channels)):
            target[base + c] = _rescaled(prob, grad, base + c, total)


@numba.njit(parallel=True, **JIT)
def softmax_rescale_kernel(prob, grad, target, channels, inner, lo, hi):
    """Softmax's last forward step and its backward, one walk over axis 1 of flat
    (outer, channels, inner) arrays, outer lo..hi, with float64 sums s over channels:
    grad None: target = prob / s, s = sum prob (normalising; target may be prob);
    else: target = (grad - s) * prob, s = sum grad * prob (the backward)."""
    for task in numba.prange(_softmax_tasks(lo, hi, inner)):
        base, span = _softmax_block(task, lo, channels, inner)
        totals = _channel_totals(prob, grad, base, span, channels, inner)
        for c in range(channels):
            row = base + U(c * inner)
            for i in range(span):
                target[row + i] = _rescaled(prob, grad, row + i, totals[i])
