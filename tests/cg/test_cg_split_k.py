"""Split-K GEMM plans: a small C with a long K (a weight gradient) cut over sub-grids of the
mesh, each on its own K slice, the partial Cs added up a reduction tree.  Every C element
gets its full K sum exactly once, literal execution equals numpy, the LDM fits, the
reduction is accounted, and LeNet conv1's weight-gradient GEMM becomes balanced."""
import numpy as np
import pytest

from pycaffe_mct.cg import ops, plan, scheduler
from pycaffe_mct.cg.spec import SW26010

rng = np.random.default_rng(9)
CONV1_WEIGHT_GRAD = (20, 25, 36864)      # LeNet conv1's weight gradient, batch 64


def split_plans(m, n, k, read_c=False):
    return [plan._plan_split_k(m, n, k, read_c, split, SW26010)
            for split in plan.mesh_splits(k)]


def test_splits_need_a_long_k():
    assert plan.mesh_splits(plan.MIN_SPLIT_K) == []
    assert plan.mesh_splits(64 * plan.MIN_SPLIT_K) == [(1, 2), (2, 2), (2, 4), (4, 4), (4, 8),
                                                       (8, 8)]


@pytest.mark.parametrize("split", [(1, 2), (2, 4), (4, 4), (8, 8)])
def test_the_reduction_tree_gathers_every_sub_grid_into_the_first_once(split):
    groups = split[0] * split[1]
    holds = {g: {g} for g in range(groups)}
    for step in plan.reduction_steps(split):
        senders = [sender for _, sender, _ in step]
        assert len(set(senders)) == len(senders)
        for receiver, sender, bus in step:
            # Partners sit side by side (row bus) or one above the other (column bus).
            same_row = receiver // split[1] == sender // split[1]
            assert (bus == "row") == same_row
            holds[receiver] |= holds.pop(sender)
    assert holds == {0: set(range(groups))}


@pytest.mark.parametrize("m,n,k", [CONV1_WEIGHT_GRAD, (9, 10, 20000), (1, 1, 600)])
def test_every_c_element_gets_its_full_k_sum_once(m, n, k):
    for p in split_plans(m, n, k):
        slices = {}
        for _, rows, cols, ks in plan.gemm_cpe_tiles(p):
            for i in range(rows.start, rows.stop):
                for j in range(cols.start, cols.stop):
                    slices.setdefault((i, j), []).append((ks.start, ks.stop))
        assert len(slices) == m * n
        for parts in slices.values():
            parts.sort()
            assert parts[0][0] == 0 and parts[-1][1] == k
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


@pytest.mark.parametrize("m,n,k", [(7, 13, 3001), (1, 1, 600), (20, 25, 4100)])
def test_literal_split_k_equals_numpy(m, n, k):
    a, b, c = (rng.standard_normal(shape).astype(np.float32)
               for shape in ((m, k), (k, n), (m, n)))
    expected = 0.5 * (a.astype(np.float64) @ b) - 2.0 * c
    for p in split_plans(m, n, k, read_c=True):
        out = c.copy()
        scheduler._gemm_tiles(p, a, b, 0.5, -2.0, out)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_the_planner_picks_split_k_for_a_weight_gradient_and_literal_mode_runs_it():
    m, n, k = 20, 25, 9216                           # conv1 at batch 16
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((m, k), (k, n)))
    out = np.ones((m, n), np.float32)
    with scheduler.execution("literal"), scheduler.accounting.recording() as plans:
        ops.gemm(a, b, beta=1.0, out=out)
    assert plans[0].details["groups"] > 1
    np.testing.assert_allclose(out, 1 + a.astype(np.float64) @ b, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("m,n,k", [CONV1_WEIGHT_GRAD, (9, 10, 20000), (64, 500, 3000)])
def test_split_plans_fit_the_ldm_and_account_the_reduction(m, n, k):
    e = SW26010.element_bytes
    for p in split_plans(m, n, k, read_c=True):
        groups = p.details["groups"]
        assert p.ldm_peak <= SW26010.ldm_budget_bytes
        assert p.flops.sum() == 2 * m * n * k + (groups - 1) * m * n
        assert p.dma_out.sum() == e * m * n                      # only the root writes C
        assert p.dma_in.sum() >= e * (m * k + k * n + m * n) - 1e-6
        # Each non-root sub-grid's partial C crosses a bus once, heard by 7 other CPEs.
        assert p.reg_comm.sum() >= 7 * e * (groups - 1) * m * n - 1e-6
        assert p.drain_seconds > 0


def test_a_one_cpe_sub_grid_broadcasts_nothing_but_its_partial_c():
    m, n, k = CONV1_WEIGHT_GRAD
    p = plan._plan_split_k(m, n, k, False, (8, 8), SW26010)
    assert p.reg_comm.sum() == pytest.approx(7 * SW26010.element_bytes * 63 * m * n)


def test_split_k_balances_lenet_conv1_weight_gradient():
    m, n, k = CONV1_WEIGHT_GRAD
    unsplit = plan._plan_gemm_on(m, n, k, True, (1, 1), SW26010)
    chosen = plan.plan_gemm(m, n, k, True)
    assert chosen.details["groups"] > 1
    assert unsplit.imbalance() > 1.2 and chosen.imbalance() < 1.05
    assert chosen.modelled_seconds() <= unsplit.modelled_seconds() * (1 + plan.FOLD_TOLERANCE)
