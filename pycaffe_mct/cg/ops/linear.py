"""GEMM and the per-channel bias of Convolution and InnerProduct.
"""
import numpy as np

from .. import scheduler


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
                    channels * inner,
                    lambda lo, hi: np.add(y[lo:hi], bias.reshape(1, -1, 1), out=y[lo:hi]))


def accumulate_channel_bias_grad(dy, bias_diff):
    """bias_diff[channel] += the sum of dy (outer, channels, inner) over outer and inner.

    Two kernels, so that a few channels still spread over the whole mesh: every
    (outer, channel) row of dy is summed to a partial sum, then each channel's
    partial sums are added into bias_diff.
    """
    outer, channels, inner = dy.shape
    rows = dy.reshape(outer * channels, inner)
    partial = np.empty((outer, channels), np.float32)
    partial_flat = partial.reshape(-1)

    def row_sums(lo, hi):
        np.sum(rows[lo:hi], axis=1, out=partial_flat[lo:hi])

    def channel_sums(lo, hi):
        bias_diff[lo:hi] += partial[:, lo:hi].sum(axis=0)
    scheduler.units("bias_backward", outer * channels, inner * dy.itemsize, partial.itemsize,
                    inner, row_sums)
    scheduler.units("bias_backward_reduce", channels, (outer + 1) * partial.itemsize,
                    bias_diff.itemsize, outer, channel_sums)
