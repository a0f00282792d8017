"""Accounting: what kernel calls would cost on a core group, read off their plans.

Recording is off by default; then the scheduler does not even build plans, so
a training step pays nothing.  Inside ``recording()`` every kernel call
appends its (cached, shape-only) plan, and ``summarize`` adds plans up into
the figures ``pycaffe_mct time`` prints.
"""
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_calls = None


def active():
    """Whether kernel calls are being recorded (the scheduler then plans every call)."""
    return _calls is not None


def record(plan):
    if _calls is not None:
        _calls.append(plan)


@contextmanager
def recording():
    """Collect the plan of every kernel call made inside the block into the yielded list."""
    global _calls
    outer, calls = _calls, []
    _calls = calls
    try:
        yield calls
    finally:
        _calls = outer
        if outer is not None:
            outer.extend(calls)


@dataclass
class CallSummary:
    """A sequence of kernel calls as the core group would run them (one after another)."""

    calls: int = 0
    flops: float = 0.0
    dma_in_bytes: float = 0.0
    dma_out_bytes: float = 0.0
    reg_comm_bytes: float = 0.0
    ldm_peak_bytes: int = 0
    tiles_per_cpe: int = 0          # the busiest CPE's tile count
    imbalance: float = 1.0          # slowest CPE's time over the average CPE's
    seconds: float = 0.0            # modelled core-group time

    @property
    def dma_bytes(self):
        return self.dma_in_bytes + self.dma_out_bytes


def summarize(plans):
    """Add up plans: totals, the LDM high-water mark, and time-weighted imbalance."""
    if not plans:
        return CallSummary()
    slowest = mean = 0.0
    tiles = 0
    for plan in plans:
        work = plan.work_seconds()
        slowest += float(work.max())
        mean += float(work.mean())
        tiles = tiles + plan.tiles
    return CallSummary(
        calls=len(plans),
        flops=sum(float(p.flops.sum()) for p in plans),
        dma_in_bytes=sum(float(p.dma_in.sum()) for p in plans),
        dma_out_bytes=sum(float(p.dma_out.sum()) for p in plans),
        reg_comm_bytes=sum(float(p.reg_comm.sum()) for p in plans),
        ldm_peak_bytes=max(p.ldm_peak for p in plans),
        tiles_per_cpe=int(np.max(tiles)),
        imbalance=slowest / mean if mean > 0 else 1.0,
        seconds=sum(p.modelled_seconds() for p in plans))
