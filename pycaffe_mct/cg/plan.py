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
  A C with few rows leaves mesh rows idle, so the mesh is also planned folded:
  N folded onto the rows stacks groups of 4, 2 or 1 physical rows side by side
  (a 4 x 16, 2 x 32 or 1 x 64 logical grid, each group on its own share of N);
  M folded onto the columns is the transpose.  Each group then fetches its own
  copy of A (B), and a bus carries every group's slices.
  A C too small for the mesh but with a long K (a weight gradient: 20 x 25 C,
  K = 36864) is planned split-K: the mesh is cut into sub-grids, each runs the
  same 2-D mapping on its own slice of K into a partial C, and the partial Cs
  are added up a binary tree over the row, then the column buses; the root
  sub-grid applies alpha and beta and writes C.
* ``plan_units``: a kernel whose outer loop runs over independent units
  (image planes, im2col rows, softmax columns, elements).  The units are cut
  into 64 contiguous shares, one per CPE, and each share into tiles of as many
  units as fit half the LDM budget (the other half is the second buffer); a
  unit too large for that is streamed through the LDM in pieces.
"""
from dataclasses import dataclass, field, replace
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
    drain_seconds: float = 0.0   # what follows the last tile and overlaps nothing

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
        """max(slowest CPE's compute, all DMA) plus the pipeline fill double buffering cannot
        hide and the drain (split-K's reduction tree)."""
        spec = self.spec
        dma = float(self.dma_in.sum() + self.dma_out.sum()) / spec.dma_bytes_per_s
        busy = max(float(self.compute_seconds().max()), dma)
        if busy == 0.0:
            return 0.0
        return (busy + spec.dma_latency_s + self.fill_bytes / spec.dma_bytes_per_s
                + self.drain_seconds)

    def imbalance(self):
        """Slowest CPE over the average CPE (1 = perfectly balanced)."""
        work = self.work_seconds()
        mean = float(work.mean())
        return float(work.max()) / mean if mean > 0 else 1.0


# ---- GEMM ------------------------------------------------------------------

# How much slower than the fastest a better balanced blocking or fold may be.
FOLD_TOLERANCE = 0.01


def gemm_ldm_bytes(bm, bn, bk, spec=SW26010, fold=(1, 1)):
    """Accumulator plus double-buffered A and B slices of one CPE (``fold`` = (fold_n, fold_m):
    a CPE holds fold_m A slices and fold_n B slices of each K step)."""
    fold_n, fold_m = fold
    return spec.element_bytes * (bm * bn + 2 * (fold_m * bm * bk + fold_n * bk * bn))


def _candidates(cap, step):
    """Block sizes to try: multiples of the 4-float vector up to ``cap``, and ``cap``."""
    return sorted({cap} | set(range(step, cap, step)))


def _deepest_k(bm, bn, cap_k, fold, spec):
    """The largest K slice (a multiple of 4 when possible) that fits beside a bm x bn block."""
    fold_n, fold_m = fold
    free = spec.ldm_budget_bytes // spec.element_bytes - bm * bn
    bk = min(cap_k, free // (2 * (fold_m * bm + fold_n * bn)))
    return bk - bk % 4 if bk >= 8 else bk


def mesh_folds(m, n, spec=SW26010):
    """The (fold_n, fold_m) readings of the mesh worth planning for an m x n C.

    (1, 1) is the mesh itself: mesh_rows x mesh_cols logical CPEs.  fold_n = f
    stacks f groups of mesh_rows/f physical rows side by side, a logical grid of
    (mesh_rows/f) x (mesh_cols*f), for a C with few rows; fold_m = f does the
    same with columns, for few columns.  A fold is kept only if C has a line for
    every logical row and column.
    """
    folds = [(1, 1)]
    for f in (2, 4, 8):
        if spec.mesh_rows % f == 0 and spec.mesh_rows // f <= m and spec.mesh_cols * f <= n:
            folds.append((f, 1))
        if spec.mesh_cols % f == 0 and spec.mesh_rows * f <= m and spec.mesh_cols // f <= n:
            folds.append((1, f))
    return folds


def logical_grid(fold, spec=SW26010):
    """(logical rows, logical columns, logical row and column of each physical CPE)."""
    fold_n, fold_m = fold
    group_rows, group_cols = spec.mesh_rows // fold_n, spec.mesh_cols // fold_m
    r, c = np.divmod(np.arange(spec.cpes), spec.mesh_cols)
    row = r % group_rows + (c // group_cols) * group_rows
    col = c % group_cols + (r // group_rows) * group_cols
    return group_rows * fold_m, group_cols * fold_n, row, col


def _busiest_line(size, lines, block):
    """Elements of ``size`` owned by the first (busiest) of ``lines`` dealt blocks of ``block``."""
    full = size // (lines * block)
    return full * block + min(size - full * lines * block, block)


def _estimate(m, n, k, bm, bn, fold, spec):
    """A cheap model of a blocking, for ranking candidates: (upper bound of the time, DMA
    bytes, the busiest CPE's share of C over the mean share).  The time is the busiest
    CPE's arithmetic or register traffic, or all DMA."""
    fold_n, fold_m = fold
    grid_rows = spec.mesh_rows // fold_n * fold_m
    grid_cols = spec.mesh_cols // fold_m * fold_n
    rows, cols = _busiest_line(m, grid_rows, bm), _busiest_line(n, grid_cols, bn)
    rows_of_blocks, cols_of_blocks = _ceil_div(m, grid_rows * bm), _ceil_div(n, grid_cols * bn)
    row_bus = fold_m * rows * k * cols_of_blocks            # what the busiest row bus carries
    col_bus = fold_n * cols * k * rows_of_blocks
    e = spec.element_bytes
    dma = e * (k * (fold_n * m * cols_of_blocks + fold_m * n * rows_of_blocks) + m * n)
    seconds = max(2.0 * k * rows * cols / spec.cpe_flops_per_s,
                  e * (row_bus + col_bus) / spec.reg_comm_bytes_per_s,
                  dma / spec.dma_bytes_per_s)
    return seconds, dma, rows * cols * spec.cpes / (m * n)


@lru_cache(maxsize=256)
def gemm_blocks(m, n, k, fold=(1, 1), spec=SW26010):
    """(bm, bn, bk) on the folded mesh, fitting the LDM budget: among the blockings within
    ``FOLD_TOLERANCE`` of the least estimated time, the best balanced, then the least DMA
    traffic, then the deepest K step."""
    fold_n, fold_m = fold
    grid_rows = spec.mesh_rows // fold_n * fold_m
    grid_cols = spec.mesh_cols // fold_m * fold_n
    cap_k = min(_ceil_div(k, spec.mesh_cols), 256)
    ranked = []
    for bm in _candidates(min(_ceil_div(m, grid_rows), 256), 4):
        for bn in _candidates(min(_ceil_div(n, grid_cols), 256), 4):
            bk = _deepest_k(bm, bn, cap_k, fold, spec)
            if bk >= 1:
                seconds, dma, balance = _estimate(m, n, k, bm, bn, fold, spec)
                ranked.append((seconds, (round(balance, 2), dma, -bk, -bm * bn), (bm, bn, bk)))
    if not ranked:
        raise AssertionError(f"no GEMM blocking of {m}x{n}x{k} fits the LDM budget")
    fastest = min(seconds for seconds, _, _ in ranked)
    near = [entry for entry in ranked if entry[0] <= fastest * (1 + FOLD_TOLERANCE)]
    return min(near, key=lambda entry: entry[1])[2]


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
    """The 2-D mesh plan of C (m x n) = A (m x k) B (k x n); ``read_c`` when beta != 0.

    Every fold of ``mesh_folds`` and every cut of ``mesh_splits`` is planned.
    Among the plans within ``FOLD_TOLERANCE`` of the fastest modelled time, the
    best balanced one wins (imbalance to two decimals), then an unsplit one,
    then the one with the least DMA, then the unfolded mesh: a small GEMM is
    often DMA-bound, where a fold or a split leaves the time as it is but puts
    the idle mesh rows (or columns) to work.
    """
    plans = [_plan_gemm_on(m, n, k, read_c, fold, spec) for fold in mesh_folds(m, n, spec)]
    plans += [_plan_split_k(m, n, k, read_c, split, spec) for split in mesh_splits(k, spec)]
    fastest = min(p.modelled_seconds() for p in plans)
    near = [p for p in plans if p.modelled_seconds() <= fastest * (1 + FOLD_TOLERANCE)]
    return min(near, key=lambda p: (round(p.imbalance(), 2), p.details["groups"] > 1,
                                    float(p.dma_in.sum())))


def _plan_gemm_on(m, n, k, read_c, fold, spec):
    """The plan on one reading of the mesh (see ``mesh_folds``).

    The K step is mesh_cols slices of bk.  The A rows of a logical row are spread
    over the CPEs of a physical row that share that logical row (one K slice each,
    fold_m slices when mesh_cols/fold_m CPEs share it) and reach the others by
    row broadcasts; B columns likewise down physical columns.  A bus is shared by
    every logical line folded onto its physical line, so each CPE is charged with
    all the bytes its row and column buses carry that it did not send itself.
    """
    fold_n, fold_m = fold
    bm, bn, bk = gemm_blocks(m, n, k, fold, spec)
    grid_rows, grid_cols, row, col = logical_grid(fold, spec)
    rows, row_blocks = _valid_per_mesh_line(m, grid_rows, bm)
    cols, col_blocks = _valid_per_mesh_line(n, grid_cols, bn)
    rows_of_blocks = _ceil_div(m, grid_rows * bm)
    cols_of_blocks = _ceil_div(n, grid_cols * bn)
    owned = (rows[row] * cols[col]).astype(np.float64)          # C elements per CPE
    e = spec.element_bytes
    # Each A element is fetched once per column of CG blocks by every physical row
    # holding its logical row; each B element once per row of CG blocks likewise.
    a_part = rows[row] * k * cols_of_blocks / (spec.mesh_cols // fold_m)
    b_part = cols[col] * k * rows_of_blocks / (spec.mesh_rows // fold_n)
    dma_in = e * (a_part + b_part + (owned if read_c else 0.0))
    mesh = (spec.mesh_rows, spec.mesh_cols)
    row_bus = np.repeat(a_part.reshape(mesh).sum(axis=1), spec.mesh_cols)
    col_bus = np.tile(b_part.reshape(mesh).sum(axis=0), spec.mesh_rows)
    received = e * (row_bus - a_part + col_bus - b_part)
    tiles = row_blocks[row] * col_blocks[col]
    fill = e * min(fold_m * bm * bk + fold_n * bk * bn, m * k + k * n)
    return Plan("gemm", spec, flops=2.0 * k * owned, dma_in=dma_in, dma_out=e * owned,
                reg_comm=received, tiles=tiles,
                ldm_peak=gemm_ldm_bytes(bm, bn, bk, spec, fold), fill_bytes=fill,
                details=dict(m=m, n=n, k=k, bm=bm, bn=bn, bk=bk, fold_n=fold_n, fold_m=fold_m,
                             groups=1, split=(1, 1)))


# ---- split-K GEMM ------------------------------------------------------------

# Each sub-grid's K slice is at least this long, or splitting is not tried.
MIN_SPLIT_K = 256


def mesh_splits(k, spec=SW26010):
    """The cuts (group rows, group columns) of the mesh into sub-grids worth planning for a
    GEMM of depth k: 2, 4, ..., 64 sub-grids, cutting columns first, while every sub-grid
    keeps a K slice of at least ``MIN_SPLIT_K``."""
    splits, rows, cols = [], 1, 1
    while rows < spec.mesh_rows or cols < spec.mesh_cols:
        if cols <= rows and cols < spec.mesh_cols or rows == spec.mesh_rows:
            cols *= 2
        else:
            rows *= 2
        if k < MIN_SPLIT_K * rows * cols or spec.mesh_rows % rows or spec.mesh_cols % cols:
            break
        splits.append((rows, cols))
    return splits


def split_grid(split, spec=SW26010):
    """(sub-grid rows, sub-grid columns, sub-grid, local row and local column of each CPE);
    sub-grid (a, b) of a split (rows, cols) is number a * cols + b."""
    split_rows, split_cols = split
    sub_rows, sub_cols = spec.mesh_rows // split_rows, spec.mesh_cols // split_cols
    r, c = np.divmod(np.arange(spec.cpes), spec.mesh_cols)
    return sub_rows, sub_cols, (r // sub_rows) * split_cols + c // sub_cols, r % sub_rows, \
        c % sub_cols


def split_k_bounds(k, groups):
    """K slice boundaries of ``groups`` sub-grids: nearly equal, the longer ones last."""
    return [(k * g) // groups for g in range(groups + 1)]


def reduction_steps(split):
    """The binary reduction tree of a split's partial Cs: a list of steps, each a list of
    (receiving sub-grid, sending sub-grid, "row" or "column" bus).  Sub-grids side by side
    add up along the row buses first, then the first column of sub-grids down the columns."""
    split_rows, split_cols = split
    steps = []
    for span, along in ((split_cols, "row"), (split_rows, "column")):
        stride = 1
        while stride < span:
            pairs = []
            for lead in range(0, span - stride, 2 * stride):
                if along == "row":
                    pairs += [(a * split_cols + lead, a * split_cols + lead + stride, along)
                              for a in range(split_rows)]
                else:
                    pairs.append((lead * split_cols, (lead + stride) * split_cols, along))
            steps.append(pairs)
            stride *= 2
    return steps


def _plan_split_k(m, n, k, read_c, split, spec):
    """The split-K plan: sub-grid g runs the 2-D mapping (``_plan_gemm_on``'s, on a
    sub_rows x sub_cols mesh) on K slice g into a partial C held in its CPEs'
    accumulators; ``reduction_steps`` then add the partial blocks by register
    communication (the receiver adds each incoming vector into its accumulator,
    so no LDM beyond the GEMM's), and sub-grid 0 reads C (beta), scales and
    writes it.  Bus accounting is ``_plan_gemm_on``'s: every byte a row or column
    bus carries is charged to the CPEs on it that did not send it.  The tree
    runs after each C block's K loop and overlaps nothing: its latency and
    transfers are the plan's drain.
    """
    groups = split[0] * split[1]
    sub_rows, sub_cols, group, row, col = split_grid(split, spec)
    k_of = np.diff(split_k_bounds(k, groups))[group]            # each CPE's K slice
    bm, bn, bk = gemm_blocks(m, n, int(k_of.max()), (1, 1),
                             replace(spec, mesh_rows=sub_rows, mesh_cols=sub_cols))
    rows, row_blocks = _valid_per_mesh_line(m, sub_rows, bm)
    cols, col_blocks = _valid_per_mesh_line(n, sub_cols, bn)
    owned = (rows[row] * cols[col]).astype(np.float64)
    root = (group == 0).astype(np.float64)
    e = spec.element_bytes
    a_part = rows[row] * k_of * _ceil_div(n, sub_cols * bn) / sub_cols
    b_part = cols[col] * k_of * _ceil_div(m, sub_rows * bm) / sub_rows
    sent = {"row": np.zeros(spec.cpes), "column": np.zeros(spec.cpes)}
    received = np.zeros(spec.cpes)
    for step in reduction_steps(split):
        for receiver, sender, bus in step:
            sent[bus][group == sender] += 1
            received[group == receiver] += 1
    mesh = (spec.mesh_rows, spec.mesh_cols)
    # A slices are broadcast only in sub-grids with more than one column, B in ones with
    # more than one row.
    on_row = a_part * (sub_cols > 1) + sent["row"] * owned
    on_column = b_part * (sub_rows > 1) + sent["column"] * owned
    row_bus = np.repeat(on_row.reshape(mesh).sum(axis=1), spec.mesh_cols)
    col_bus = np.tile(on_column.reshape(mesh).sum(axis=0), spec.mesh_rows)
    tiles = row_blocks[row] * col_blocks[col]
    block_seconds = (spec.reg_comm_latency_cycles / spec.clock_hz
                     + e * bm * bn / spec.reg_comm_bytes_per_s)
    return Plan("gemm", spec, flops=2.0 * k_of * owned + received * owned,
                dma_in=e * (a_part + b_part + (root * owned if read_c else 0.0)),
                dma_out=e * root * owned,
                reg_comm=e * (row_bus - on_row + col_bus - on_column), tiles=tiles,
                ldm_peak=gemm_ldm_bytes(bm, bn, bk, spec), fill_bytes=e * min(
                    bm * bk + bk * bn, m * k + k * n),
                details=dict(m=m, n=n, k=k, bm=bm, bn=bn, bk=bk, fold_n=1, fold_m=1,
                             groups=groups, split=split),
                drain_seconds=int(tiles.max()) * len(reduction_steps(split)) * block_seconds)


def gemm_cpe_tiles(plan):
    """Literal tile list: (cpe, row slice, column slice, K slice) of every (partial) C block,
    CPE by CPE; a plan that does not split K has one K slice, all of K."""
    d, spec = plan.details, plan.spec
    m, n, bm, bn = d["m"], d["n"], d["bm"], d["bn"]
    if d["groups"] > 1:
        grid_rows, grid_cols, group, row, col = split_grid(d["split"], spec)
        bounds = split_k_bounds(d["k"], d["groups"])
        k_slices = [slice(bounds[g], bounds[g + 1]) for g in group.tolist()]
    else:
        grid_rows, grid_cols, row, col = logical_grid((d["fold_n"], d["fold_m"]), spec)
        k_slices = [slice(0, d["k"])] * spec.cpes
    for cpe in range(spec.cpes):
        for row0 in range(int(row[cpe]) * bm, m, grid_rows * bm):
            for col0 in range(int(col[cpe]) * bn, n, grid_cols * bn):
                yield (cpe, slice(row0, min(row0 + bm, m)), slice(col0, min(col0 + bn, n)),
                       k_slices[cpe])


def gemm_cpe_blocks(plan):
    """(cpe, row slice, column slice) of every C block, CPE by CPE (of a split-K plan: every
    partial block, so each C element once per sub-grid)."""
    for cpe, rows, cols, _ in gemm_cpe_tiles(plan):
        yield cpe, rows, cols


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
