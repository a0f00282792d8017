"""Plans and their accounting: invariants that hold for every shape."""
import numpy as np
import pytest

from pycaffe_mct.cg import accounting, ops, plan, scheduler
from pycaffe_mct.cg.spec import SW26010, CoreGroupSpec

GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (1, 1000, 9), (20, 9216, 25), (64, 500, 800),
               (9, 10, 20000), (128, 11664, 1200), (4096, 4096, 4096)]


@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
def test_gemm_plan_invariants(m, n, k):
    p = plan.plan_gemm(m, n, k)
    e = SW26010.element_bytes
    # A split-K plan also adds up its sub-grids' partial Cs.
    assert p.flops.sum() == 2 * m * n * k + (p.details["groups"] - 1) * m * n
    assert p.ldm_peak <= SW26010.ldm_budget_bytes <= SW26010.ldm_bytes
    assert p.dma_in.sum() >= e * (m * k + k * n) - 1e-6       # compulsory reads
    assert p.dma_out.sum() == e * m * n
    assert p.imbalance() >= 1.0
    assert p.tiles.max() >= 1 and p.modelled_seconds() > 0


def test_gemm_plan_reads_c_when_accumulating():
    plain, accumulate = plan.plan_gemm(30, 40, 50), plan.plan_gemm(30, 40, 50, read_c=True)
    assert accumulate.dma_in.sum() - plain.dma_in.sum() == 4 * 30 * 40


def test_gemm_plan_broadcasts_over_the_mesh():
    """Each DMA-fetched A/B element reaches the other 7 CPEs of its row or column."""
    p = plan.plan_gemm(256, 256, 256)
    assert p.reg_comm.sum() == pytest.approx(7 * p.dma_in.sum())


def test_gemm_blocks_cover_c_once():
    p = plan.plan_gemm(37, 53, 11)
    covered = np.zeros((37, 53), int)
    for _, rows, cols in plan.gemm_cpe_blocks(p):
        covered[rows, cols] += 1
    assert (covered == 1).all()


def test_big_square_gemm_is_compute_bound_and_balanced():
    p = plan.plan_gemm(4096, 4096, 4096)
    compute = 2 * 4096 ** 3 / SW26010.peak_flops_per_s
    assert compute <= p.modelled_seconds() < 1.1 * compute
    assert p.imbalance() < 1.05


@pytest.mark.parametrize("units,in_bytes,out_bytes", [(1, 4, 4), (7, 100, 50), (1000, 64, 64),
                                                      (70, 400_000, 4), (64 * 5 + 3, 0, 4)])
def test_unit_plan_invariants(units, in_bytes, out_bytes):
    p = plan.plan_units("k", units, in_bytes, out_bytes, 3)
    assert p.dma_in.sum() == units * in_bytes and p.dma_out.sum() == units * out_bytes
    assert p.flops.sum() == 3 * units
    assert p.ldm_peak <= SW26010.ldm_budget_bytes
    assert p.imbalance() >= 1.0
    ranges = sorted((lo, hi) for _, lo, hi in plan.unit_tiles(p))
    bounds = [0] + [hi for _, hi in ranges]
    assert [lo for lo, _ in ranges] == bounds[:-1] and bounds[-1] == units   # a partition


def test_plan_refuses_more_ldm_than_the_cpe_has():
    tiny = CoreGroupSpec(ldm_bytes=1024, ldm_budget_bytes=4096)
    with pytest.raises(AssertionError, match="LDM"):
        plan.plan_units("k", 10, 1000, 1000, 0, tiny)


def test_no_plans_are_built_unless_recording(monkeypatch):
    def refuse(*args):
        raise AssertionError("planned while accounting was off")
    monkeypatch.setattr(scheduler, "plan_gemm", refuse)
    monkeypatch.setattr(scheduler, "plan_units", refuse)
    a = np.ones((3, 4), np.float32)
    with scheduler.execution("fast"):        # even when the suite runs in literal mode
        ops.gemm(a, a, trans_b=True)
        ops.relu_forward(a, 0.0, np.empty_like(a))


def test_recording_collects_each_call_and_nests():
    a = np.ones((5, 6), np.float32)
    with accounting.recording() as outer:
        ops.gemm(a, a, trans_b=True)
        with accounting.recording() as inner:
            ops.relu_forward(a, 0.0, np.empty_like(a))
    assert [p.kernel for p in inner] == ["relu_forward"]
    assert [p.kernel for p in outer] == ["gemm", "relu_forward"]
    summary = accounting.summarize(outer)
    assert summary.calls == 2 and summary.flops == 2 * 5 * 5 * 6 + 30
    assert summary.seconds == pytest.approx(sum(p.modelled_seconds() for p in outer))
    assert not accounting.active()


@pytest.mark.parametrize("m,n,k", [(300, 100, 100), (50, 700, 100)])   # rows, then columns
def test_fast_gemm_split_over_host_threads_matches_numpy(monkeypatch, m, n, k):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", scheduler.HostThreads(3))
    rng = np.random.default_rng(0)
    a, b = rng.random((k, m), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    c = rng.random((m, n), dtype=np.float32)
    expected = 0.5 * (a.T.astype(np.float64) @ b) + 2.0 * c
    with scheduler.execution("fast"):
        got = ops.gemm(a, b, trans_a=True, alpha=0.5, beta=2.0, out=c)
        plain = ops.gemm(a, b, trans_a=True)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(plain, a.T @ b, rtol=1e-5)
