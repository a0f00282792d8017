"""GEMM on both executors against numpy, and the per-channel bias of Convolution and
InnerProduct."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops
from .op_helpers import in_both_modes, rand


@pytest.mark.usefixtures("literal_mode")
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (9, 2, 3000), (130, 17, 33),
                                   (1, 300, 10), (70, 1, 5)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_matches_numpy(m, n, k, trans_a, trans_b):
    a = rand(k, m) if trans_a else rand(m, k)
    b = rand(n, k) if trans_b else rand(k, n)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.usefixtures("literal_mode")
def test_gemm_alpha_beta_accumulate():
    a, b, c = rand(11, 13), rand(13, 9), rand(11, 9)
    out = c.copy()
    ops.gemm(a, b, alpha=0.5, beta=2.0, out=out)
    np.testing.assert_allclose(out, 0.5 * (a @ b) + 2.0 * c, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("literal_mode")
def test_channel_bias_forward_and_gradient():
    y, bias = rand(5, 70, 3), rand(70)
    expected = y + bias[None, :, None]
    ops.add_channel_bias(y, bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    grad = np.ones(70, np.float32)
    ops.accumulate_channel_bias_grad(y, grad)
    np.testing.assert_allclose(grad, 1 + expected.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 70, 2), (9, 5, 13), (64, 20, 1)])
def test_bias_gradient_by_partial_sums(shape):
    dy = rand(*shape)
    start = rand(shape[1])

    def run():
        grad = start.copy()
        ops.accumulate_channel_bias_grad(dy, grad)
        return grad
    # The executors add a channel's partial sums in different orders: a few ulps of
    # partial sums of up to 64 normal values (measured 1.4e-6).
    grad, kernels = in_both_modes(run, atol=3e-6)
    np.testing.assert_allclose(grad, start + dy.astype(np.float64).sum(axis=(0, 2)),
                               rtol=1e-5, atol=1e-5)
    # An InnerProduct's rows (inner 1) are their own partial sums.
    assert kernels == ["bias_backward"] * (shape[2] > 1) + ["bias_backward_reduce"]


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 70, 2), (9, 5, 13), (64, 20, 1)])
def test_bias_forward_is_numpys_add(shape):
    y, bias = rand(*shape), rand(shape[1])

    def run():
        out = y.copy()
        ops.add_channel_bias(out, bias)
        return out
    out, kernels = in_both_modes(run)
    np.testing.assert_array_equal(out, y + bias[None, :, None])
    assert kernels == ["bias_forward"]
