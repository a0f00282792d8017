"""Plans: how one kernel call maps onto the 64 CPEs of a core group.

A plan is computed from shapes alone (and cached per shape), never from data:
it fixes the tiles, the LDM each CPE needs for them (double-buffered), which
CPE runs which tile, and what every CPE computes, fetches by DMA and receives
over the register buses.  The scheduler executes a plan; the accounting reads
its per-CPE figures.  Two families cover every kernel:

* ``plan_gemm``: C = A B as a 2-D mapping onto the mesh, as in swDNN/swCaffe.
  The CG walks C in blocks of (8 bm) x (8 bn); CPE (r, c) keeps a bm x bn
  accumulator and its own bm x bk slice of A and bk x bn slice of B.  In
  sub-step s of a K step of 8 bk, CPE (r, s) broadcasts its A slice along row
  r and CPE (s, c) its B slice along column c, so every element fetched by DMA
  reaches the 7 other CPEs of its row or column by register communication.
* ``plan_units``: a kernel whose outer loop runs over independent units
  (image planes, im2col rows, softmax columns, elements).  The units are cut
  into 64 contiguous shares, one per CPE, and each share into tiles of as many
  units as fit half the LDM budget (the other half is the second buffer); a
  unit too large for that is streamed through the LDM in pieces.
"""
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .spec import SW26010


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class Plan:
    """Per-CPE figures of one kernel call; arrays have one entry per CPE."""

    kernel: str
    spec: object
    flops: np.ndarray
    dma_in: np.ndarray
    dma_out: np.ndarray
    reg_comm: np.ndarray
    tiles: np.ndarray
    ldm_peak: int            # bytes, the largest tile set any CPE holds at once
    fill_bytes: int          # what must arrive before the first tile can start
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.ldm_peak > self.spec.ldm_bytes:
            raise AssertionError(f"{self.kernel}: plan needs {self.ldm_peak} bytes of LDM per "
                                 f"CPE, more than the {self.spec.ldm_bytes} available")

    def compute_seconds(self):
        """Per CPE: arithmetic and register traffic, overlapped as swDNN's inner loop does."""
        spec = self.spec
        return np.maximum(self.flops / spec.cpe_flops_per_s,
                          self.reg_comm / spec.reg_comm_bytes_per_s)

    def work_seconds(self):
        """Per CPE: its compute, or its fair share of the DMA bandwidth if that is longer."""
        share = self.spec.dma_bytes_per_s / self.spec.cpes
        return np.maximum(self.compute_seconds(), (self.dma_in + self.dma_out) / share)

    def modelled_seconds(self):
        """max(slowest CPE's compute, all DMA) plus the pipeline fill double buffering cannot hide."""
        spec = self.spec
        dma = float(self.dma_in.sum() + self.dma_out.sum()) / spec.dma_bytes_per_s
        busy = max(float(self.compute_seconds().max()), dma)
        if busy == 0.0:
            return 0.0
        return busy + spec.dma_latency_s + self.fill_bytes / spec.dma_bytes_per_s

    def imbalance(self):
        """Slowest CPE over the average CPE (1 = perfectly balanced)."""
        work = self.work_seconds()
        mean = float(work.mean())
        return float(work.max()) / mean if mean > 0 else 1.0


# ---- GEMM ------------------------------------------------------------------

def gemm_ldm_bytes(bm, bn, bk, spec=SW26010):
    """Accumulator plus double-buffered A and B slices of one CPE."""
    return spec.element_bytes * (bm * bn + 2 * (bm * bk + bk * bn))


def _gemm_dma_bytes(m, n, k, bm, bn, spec):
    """Every A element is fetched once per column of CG blocks, every B element once per row."""
    rows_of_blocks = _ceil_div(m, spec.mesh_rows * bm)
    cols_of_blocks = _ceil_div(n, spec.mesh_cols * bn)
    return spec.element_bytes * k * (m * cols_of_blocks + n * rows_of_blocks)


def _candidates(cap, step):
    """Block sizes to try: multiples of the 4-float vector up to ``cap``, and ``cap``."""
    return sorted({cap} | set(range(step, cap, step)))


def _deepest_k(bm, bn, cap_k, spec):
    """The largest K slice (a multiple of 4 when possible) that fits beside a bm x bn block."""
    free = spec.ldm_budget_bytes // spec.element_bytes - bm * bn
    bk = min(cap_k, free // (2 * (bm + bn)))
    return bk - bk % 4 if bk >= 8 else bk


@lru_cache(maxsize=256)
def gemm_blocks(m, n, k, spec=SW26010):
    """(bm, bn, bk) fitting the LDM budget with the least DMA traffic, then the deepest K step."""
    cap_k = min(_ceil_div(k, spec.mesh_cols), 256)
    best = None
    for bm in _candidates(min(_ceil_div(m, spec.mesh_rows), 256), 4):
        for bn in _candidates(min(_ceil_div(n, spec.mesh_cols), 256), 4):
            bk = _deepest_k(bm, bn, cap_k, spec)
            if bk < 1:
                continue
            key = (_gemm_dma_bytes(m, n, k, bm, bn, spec), -bk, -bm * bn)
            if best is None or key < best[0]:
                best = (key, (bm, bn, bk))
    if best is None:
        raise AssertionError(f"no GEMM blocking of {m}x{n}x{k} fits the LDM budget")
    return best[1]


def _valid_per_mesh_line(size, lines, block):
    """Elements each mesh row (or column) owns when ``size`` is cut into blocks of ``block``.

    Returns (total elements per line, number of CG blocks where the line has work).
    """
    starts = np.arange(0, size, lines * block)
    offsets = np.arange(lines)[:, None] * block
    valid = np.clip(size - starts[None, :] - offsets, 0, block)
    return valid.sum(axis=1), (valid > 0).sum(axis=1)


@lru_cache(maxsize=256)
def plan_gemm(m, n, k, read_c=False, spec=SW26010):
    """The 2-D mesh plan of C (m x n) = A (m x k) B (k x n); ``read_c`` when beta != 0."""
    bm, bn, bk = gemm_blocks(m, n, k, spec)
    rows, row_blocks = _valid_per_mesh_line(m, spec.mesh_rows, bm)
    cols, col_blocks = _valid_per_mesh_line(n, spec.mesh_cols, bn)
    rows_of_blocks = _ceil_div(m, spec.mesh_rows * bm)
    cols_of_blocks = _ceil_div(n, spec.mesh_cols * bn)
    owned = np.outer(rows, cols).ravel().astype(np.float64)        # C elements per CPE
    e = spec.element_bytes
    # A rows of mesh row r are spread over its 8 CPEs (one K slice each), fetched
    # once per column of CG blocks; likewise B columns down a mesh column.
    a_part = np.repeat(rows * k * cols_of_blocks / spec.mesh_cols, spec.mesh_cols)
    b_part = np.tile(cols * k * rows_of_blocks / spec.mesh_rows, spec.mesh_rows)
    dma_in = e * (a_part + b_part + (owned if read_c else 0.0))
    # Each CPE receives from its 7 row (column) mates the A (B) slices it does not hold.
    others = (spec.mesh_cols - 1) / spec.mesh_cols
    received = e * others * (np.repeat(rows * k * cols_of_blocks, spec.mesh_cols)
                             + np.tile(cols * k * rows_of_blocks, spec.mesh_rows))
    tiles = np.outer(row_blocks, col_blocks).ravel()
    fill = e * min(bm * bk + bk * bn, m * k + k * n)
    return Plan("gemm", spec, flops=2.0 * k * owned, dma_in=dma_in, dma_out=e * owned,
                reg_comm=received, tiles=tiles, ldm_peak=gemm_ldm_bytes(bm, bn, bk, spec),
                fill_bytes=fill, details=dict(m=m, n=n, k=k, bm=bm, bn=bn, bk=bk))


def gemm_cpe_blocks(plan):
    """Literal tile list: (cpe, row slice, column slice) of every C block, CPE by CPE."""
    d, spec = plan.details, plan.spec
    m, n, bm, bn = d["m"], d["n"], d["bm"], d["bn"]
    for cpe in range(spec.cpes):
        r, c = divmod(cpe, spec.mesh_cols)
        for row0 in range(r * bm, m, spec.mesh_rows * bm):
            for col0 in range(c * bn, n, spec.mesh_cols * bn):
                yield cpe, slice(row0, min(row0 + bm, m)), slice(col0, min(col0 + bn, n))


# ---- independent units ---------------------------------------------------------

def cpe_shares(units, cpes):
    """Contiguous, nearly equal unit ranges, one per CPE (the first ones get the extra unit)."""
    bounds = (np.arange(cpes + 1) * units) // cpes
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


@lru_cache(maxsize=1024)
def plan_units(kernel, units, in_bytes, out_bytes, flops, spec=SW26010):
    """Plan ``units`` independent units, each reading ``in_bytes`` and writing ``out_bytes``
    and doing ``flops`` (all per unit)."""
    unit_bytes = in_bytes + out_bytes
    half = spec.ldm_budget_bytes // 2
    if unit_bytes <= half:
        per_tile, pieces = max(1, half // max(unit_bytes, 1)), 1
        tile_bytes = per_tile * unit_bytes
    else:
        per_tile, pieces = 1, _ceil_div(unit_bytes, half)
        tile_bytes = _ceil_div(unit_bytes, pieces)
    shares = cpe_shares(units, spec.cpes)
    counts = np.array([hi - lo for lo, hi in shares], dtype=np.float64)
    tiles = np.ceil(counts / per_tile).astype(np.int64) * pieces
    # The buffers a CPE fills never exceed what its share needs.
    ldm = 2 * min(tile_bytes, int(counts.max()) * unit_bytes) if units else 0
    return Plan(kernel, spec, flops=counts * flops, dma_in=counts * in_bytes,
                dma_out=counts * out_bytes, reg_comm=np.zeros(spec.cpes), tiles=tiles,
                ldm_peak=ldm, fill_bytes=min(tile_bytes, units * unit_bytes),
                details=dict(units=units, units_per_tile=per_tile, pieces=pieces,
                             shares=shares))


def unit_tiles(plan):
    """Literal tile list: (cpe, lo, hi) unit ranges, CPE by CPE (a streamed unit is one range)."""
    per_tile = plan.details["units_per_tile"]
    for cpe, (lo, hi) in enumerate(plan.details["shares"]):
        for start in range(lo, hi, per_tile):
            yield cpe, start, min(start + per_tile, hi)
