"""The host's GEMM (fast mode): shares over host threads and BLAS's in-place beta.

Operands come plain, transposed and strided; the product is large enough to be
split over threads (forced to 3) or small enough to run as one call.
"""
import numpy as np
import pytest

from pycaffe_mct.cg import blas, ops, scheduler

rng = np.random.default_rng(5)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def operand(rows, cols, form):
    """A (rows, cols) float32 matrix, C-ordered, a transposed view, or a strided view."""
    if form == "transposed":
        return rand(cols, rows).T
    if form == "strided":
        return rand(rows, 2 * cols)[:, ::2]
    return rand(rows, cols)


HOSTS = {count: scheduler.HostThreads(count) for count in (1, 3)}


@pytest.fixture(params=[1, 3])
def threads(request, monkeypatch):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[request.param])
    return request.param


@pytest.fixture(params=["cblas", "numpy"])
def accumulate_path(request, monkeypatch):
    """numpy's own cblas_sgemm through ctypes, or the fallback where it cannot be found."""
    if request.param == "cblas" and not blas.available():
        pytest.skip("numpy's BLAS library was not found; only the fallback runs here")
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_cblas_sgemm", None)
    with scheduler.execution("fast"):
        yield request.param


@pytest.mark.parametrize("m,n,k", [(3, 5, 7), (300, 70, 150), (40, 400, 200)])
@pytest.mark.parametrize("left_form", ["plain", "transposed", "strided"])
@pytest.mark.parametrize("right_form", ["plain", "transposed"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 0.0), (1.0, 1.0), (-2.0, 0.25)])
def test_gemm_in_fast_mode(threads, accumulate_path, m, n, k, left_form, right_form, alpha,
                           beta):
    left, right = operand(m, k, left_form), operand(k, n, right_form)
    out = rand(m, n)
    expected = alpha * (left.astype(np.float64) @ right) + beta * out
    ops.gemm(left, right, alpha=alpha, beta=beta, out=out)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_accumulating_into_a_strided_output_writes_through(threads, accumulate_path):
    """A column block of a larger C is not contiguous: BLAS works on a copy that is put back."""
    left, right, big = rand(30, 20), rand(20, 25), rand(30, 60)
    block = big[:, 10:35]
    expected_big = big.astype(np.float64)
    expected_big[:, 10:35] += left.astype(np.float64) @ right
    ops.gemm(left, right, beta=1.0, out=block)
    np.testing.assert_allclose(big, expected_big, rtol=1e-4, atol=1e-4)


def test_sgemm_with_beta_zero_ignores_what_c_held(accumulate_path):
    left, right = rand(4, 6), rand(6, 5)
    out = np.full((4, 5), np.nan, np.float32)
    blas.sgemm(left, right, 2.0, 0.0, out)
    np.testing.assert_allclose(out, 2.0 * (left @ right), rtol=1e-5)


def test_sgemm_into_a_row_with_strided_columns(accumulate_path):
    left, right, big = rand(1, 6), rand(6, 5), rand(1, 10)
    row = big[:, ::2]
    expected = big.astype(np.float64)
    expected[:, ::2] = 0.5 * expected[:, ::2] + left.astype(np.float64) @ right
    blas.sgemm(left, right, 1.0, 0.5, row)
    np.testing.assert_allclose(big, expected, rtol=1e-5)
