"""The host's register-blocked GEMM (``cg/register_gemm.py``) and its vector lanes (``cg/simd.py``).

Products are checked against float64 numpy; the fast executor's GEMM is checked
to take this kernel where it applies, in row shares whose bits do not depend on
the host thread count.
"""
import numba
import numpy as np
import pytest

from pycaffe_mct.cg import ops, register_gemm, scheduler, simd

rng = np.random.default_rng(11)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@numba.njit
def _lanes_roundtrip(x, value, out):
    """out[0:16] = value * x[1:17] + x[17:33]; out[16:32] = 0."""
    s = simd.splat(value)
    simd.store(out, 0, simd.fma(s, simd.load(x, 1), simd.load(x, 17)))
    simd.store(out, 16, simd.zeros())


def test_simd_lanes_load_splat_fma_store():
    x, out = rand(40), np.full(32, np.nan, np.float32)
    _lanes_roundtrip(x, np.float32(1.5), out)
    np.testing.assert_allclose(out[:16], np.float32(1.5) * x[1:17] + x[17:33], rtol=1e-6)
    assert not out[16:].any()


def _reference(left, right):
    return left.astype(np.float64) @ right.astype(np.float64)


@pytest.mark.parametrize("m,k,n", [(8, 1, 32), (32, 800, 512), (800, 32, 96), (24, 75, 64)])
@pytest.mark.parametrize("left_form", ["plain", "transposed"])
def test_product_matches_numpy(m, k, n, left_form):
    left = rand(m, k) if left_form == "plain" else rand(k, m).T
    right, out = rand(k, n), np.full((m, n), np.nan, np.float32)
    assert register_gemm.applies(left, right, out)
    register_gemm.multiply(left, right, out)
    np.testing.assert_allclose(out, _reference(left, right), rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_rows_of_b_and_c_may_be_views_of_wider_matrices():
    left = rand(16, 40)
    right_wide, out_wide = rand(40, 100), np.zeros((16, 70), np.float32)
    right, out = right_wide[:, 4:68], out_wide[:, 3:67]
    assert register_gemm.applies(left, right, out)
    register_gemm.multiply(left, right, out)
    np.testing.assert_allclose(out, _reference(left, right), rtol=1e-5, atol=1e-4)
    assert not out_wide[:, :3].any() and not out_wide[:, 67:].any()   # nothing written beside


@pytest.mark.parametrize("case", ["rows not 8s", "columns not 32s", "K too long", "float64",
                                  "B columns strided", "C columns strided", "empty K"])
def test_what_it_does_not_take_goes_elsewhere(case):
    m, k, n = 16, 20, 64
    left, right, out = rand(m, k), rand(k, n), np.empty((m, n), np.float32)
    if case == "rows not 8s":
        left, out = rand(12, k), np.empty((12, n), np.float32)
    elif case == "columns not 32s":
        right, out = rand(k, 48), np.empty((m, 48), np.float32)
    elif case == "K too long":
        left, right = rand(m, register_gemm.MAX_K + 1), rand(register_gemm.MAX_K + 1, n)
    elif case == "float64":
        left = left.astype(np.float64)
    elif case == "B columns strided":
        right = rand(k, 2 * n)[:, ::2]
    elif case == "C columns strided":
        out = np.empty((m, 2 * n), np.float32)[:, ::2]
    elif case == "empty K":
        left, right = rand(m, 0), rand(0, n)
    assert not register_gemm.applies(left, right, out)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fast_gemm_takes_it_in_row_shares_with_the_same_bits(threads, monkeypatch):
    left, right = rand(200, 300), rand(300, 256)       # 25 blocks of 8 rows: uneven shares
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", scheduler.HostThreads(threads))
    whole = register_gemm.multiply(left, right, np.empty((200, 256), np.float32))
    with scheduler.execution("fast"):
        shared = ops.gemm(left, right, alpha=1.0, beta=0.0, out=np.empty_like(whole))
    np.testing.assert_array_equal(shared, whole)


@numba.njit
def _halves_and_total(x, low, high, out):
    """out[0:16] = x[low:low + 8] then x[high:high + 8]; returns their sum."""
    lanes = simd.load_halves(x, low, high)
    simd.store(out, 0, lanes)
    return simd.total(lanes)


def test_simd_lanes_from_two_halves_and_their_total():
    x, out = rand(40), np.full(16, np.nan, np.float32)
    total = _halves_and_total(x, 3, 21, out)
    np.testing.assert_array_equal(out, np.concatenate([x[3:11], x[21:29]]))
    np.testing.assert_allclose(total, out.astype(np.float64).sum(), rtol=1e-6)
