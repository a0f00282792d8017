"""GEMM plans on a folded mesh: a C with few rows (columns) puts the idle mesh rows
(columns) to work on more of N (M), with the LDM, coverage and bus accounting intact."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops, plan, scheduler
from pycaffe_mct.cg.spec import SW26010

# (m, n, k) -> the fold the planner is expected to pick; the first two are LeNet's conv1
# forward GEMM at batch 64 and 16, the others a single-row C and a single-column one.
FOLDED = {(20, 36864, 25): (2, 1), (20, 9216, 25): (2, 1), (1, 1000, 9): (8, 1),
          (1000, 1, 9): (1, 8)}


def folded_plan(m, n, k):
    p = plan.plan_gemm(m, n, k)
    assert (p.details["fold_n"], p.details["fold_m"]) == FOLDED[(m, n, k)]
    return p


def unfolded_plan(m, n, k):
    return plan._plan_gemm_on(m, n, k, False, (1, 1), SW26010)


@pytest.mark.parametrize("m,n,k", sorted(FOLDED))
def test_a_fold_balances_a_small_dimension_at_no_cost_in_time(m, n, k):
    folded, unfolded = folded_plan(m, n, k), unfolded_plan(m, n, k)
    assert unfolded.imbalance() > 1.08
    assert folded.imbalance() < 1.03
    assert folded.modelled_seconds() <= unfolded.modelled_seconds() * (1 + plan.FOLD_TOLERANCE)


@pytest.mark.parametrize("m,n,k", sorted(FOLDED))
def test_folded_plan_invariants(m, n, k):
    p = folded_plan(m, n, k)
    e = SW26010.element_bytes
    assert p.ldm_peak <= SW26010.ldm_budget_bytes
    assert p.flops.sum() == 2 * m * n * k and p.dma_out.sum() == e * m * n
    assert p.dma_in.sum() >= e * (m * k + k * n) - 1e-6
    # Every byte a bus carries is heard by the other 7 CPEs on it, folded or not.
    assert p.reg_comm.sum() == pytest.approx(7 * p.dma_in.sum())


@pytest.mark.parametrize("m,n,k", sorted(FOLDED))
def test_folded_blocks_cover_c_once(m, n, k):
    p = folded_plan(m, n, k)
    covered = np.zeros((m, n), int)
    tiles = np.zeros(SW26010.cpes, int)
    for cpe, rows, cols in plan.gemm_cpe_blocks(p):
        covered[rows, cols] += 1
        tiles[cpe] += 1
    assert (covered == 1).all()
    np.testing.assert_array_equal(tiles, p.tiles)


@pytest.mark.parametrize("fold", [(2, 1), (4, 1), (1, 2), (1, 8)])
def test_every_fold_reads_each_cpe_once(fold):
    rows, cols, row, col = plan.logical_grid(fold)
    assert rows * cols == SW26010.cpes
    assert len(set(zip(row.tolist(), col.tolist()))) == SW26010.cpes


def test_folded_gemm_runs_tile_by_tile():
    folded_plan(1, 1000, 9)
    rng = np.random.default_rng(3)
    a, b = rng.random((9, 1)).astype(np.float32), rng.random((9, 1000)).astype(np.float32)
    with scheduler.execution("literal"):
        got = ops.gemm(a, b, trans_a=True)
    np.testing.assert_allclose(got, a.T @ b, rtol=1e-5)
