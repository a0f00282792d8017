"""Copies of windows: Crop, and Concat's forward and Slice's backward.
A unit is one index of the first axis.
"""
from .. import scheduler


def crop_forward(x, offsets, out):
    """out = the window of x starting at ``offsets`` (one per axis) with out's shape."""
    window = x[_window(offsets, out.shape)]

    def run(lo, hi):
        out[lo:hi] = window[lo:hi]
    _rows("crop_forward", out, run)


def crop_backward(dy, offsets, dx):
    """dx = zeros with dy placed back at ``offsets``."""
    window = dx[_window(offsets, dy.shape)]
    start = offsets[0]

    def run(lo, hi):
        dx[lo:hi] = 0
        first, last = max(lo, start), min(hi, start + dy.shape[0])
        if first < last:
            window[first - start:last - start] = dy[first - start:last - start]
    _rows("crop_backward", dx, run)


def place_window(x, offsets, out):
    """The window of out starting at ``offsets`` (one per axis) = x; the rest of out is kept
    (Concat's forward and Slice's backward; ``crop_forward`` is the inverse)."""
    window = out[_window(offsets, x.shape)]

    def run(lo, hi):
        window[lo:hi] = x[lo:hi]
    _rows("place_window", x, run)


def _rows(kernel_name, out, run):
    """A copy whose unit is one index of out's first axis."""
    row = out[0].size * out.itemsize if out.size else 0
    scheduler.units(kernel_name, out.shape[0], row, row, 0, run)


def _window(offsets, shape):
    return tuple(slice(o, o + n) for o, n in zip(offsets, shape))
