"""GEMM and the per-channel bias of Convolution and InnerProduct.

The bias kernels stream memory at a few bytes a flop, so they run on the calling
thread: LeNet's conv1 bias (64 x 20 x 576) took 0.08 ms there and a median 0.15 ms
spread over 2 host threads (waking a helper thread costs more than the half it saves);
numpy's broadcast add took 0.17 ms.
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``out = alpha * op(a) @ op(b) + beta * out`` (BLAS sgemm semantics)."""
    left = a.T if trans_a else a
    right = b.T if trans_b else b
    return scheduler.gemm(left, right, alpha, beta, out)


def add_channel_bias(y, bias):
    """y (outer, channels, inner) += bias[channel]."""
    outer, channels, inner = y.shape
    per_outer = channels * inner * y.itemsize
    scheduler.units("bias_forward", outer, per_outer + bias.nbytes, per_outer,
                    channels * inner, lambda lo, hi: bias_forward_kernel(y, bias, lo, hi))


def accumulate_channel_bias_grad(dy, bias_diff):
    """bias_diff[channel] += the sum of dy (outer, channels, inner) over outer and inner.

    Two kernels, so that a few channels still spread over the whole mesh: every
    (outer, channel) row of dy is summed to a partial sum, then each channel's
    partial sums are added into bias_diff, in outer order.
    """
    outer, channels, inner = dy.shape
    rows = dy.reshape(outer * channels, inner)
    if inner == 1:                      # an InnerProduct's: each row is its own sum
        partial = rows.reshape(outer, channels)
    else:
        partial = np.empty((outer, channels), np.float32)
        scheduler.units("bias_backward", outer * channels, inner * dy.itemsize,
                        partial.itemsize, inner,
                        lambda lo, hi: row_sums_kernel(rows, partial.reshape(-1), lo, hi))

    def channel_sums(lo, hi):
        bias_diff[lo:hi] += partial[:, lo:hi].sum(axis=0)
    scheduler.units("bias_backward_reduce", channels, (outer + 1) * partial.itemsize,
                    bias_diff.itemsize, outer, channel_sums)


@numba.njit(**JIT)
def bias_forward_kernel(y, bias, lo, hi):
    """y[n, c, :] += bias[c] for n in lo..hi (numpy's float32 add, element by element)."""
    _, channels, inner = y.shape
    flat = y.reshape(-1)
    length = U(inner)
    for n in range(lo, hi):
        if inner == 1:                  # an InnerProduct's: along the channels
            start = U(n * channels)
            for c in range(U(channels)):
                flat[start + c] += bias[c]
            continue
        for c in range(channels):
            shift = bias[c]
            start = U((n * channels + c) * inner)
            for i in range(length):
                flat[start + i] += shift


@numba.njit(**dict(JIT, fastmath={"reassoc"}))
def row_sums_kernel(rows, sums, lo, hi):
    """sums[r] = the float32 sum of row r of rows (R, length), rows lo..hi (in vector lanes)."""
    length = rows.shape[1]
    flat = rows.reshape(-1)
    for r in range(lo, hi):
        start = U(r * length)
        total = np.float32(0.0)
        for i in range(U(length)):
            total += flat[start + i]
        sums[r] = total
