"""numba kernels of convolution: unfolding images into GEMM columns and folding back.

Same conventions as ``kernels.py``: pure functions of arrays and integers,
``nogil`` and cached on disk, ``lo``/``hi`` select a range of units.
"""
import numba

_JIT = dict(nogil=True, cache=True)


@numba.njit(inline="always")
def _inside(first, stride, size, count):
    """[lo, hi) of the outputs o in [0, count) whose input first + o*stride is in [0, size)."""
    lo = 0 if first >= 0 else (-first + stride - 1) // stride
    hi = 0 if first >= size else (size - first + stride - 1) // stride
    return min(lo, count), min(hi, count)


@numba.njit(parallel=True, **_JIT)
def im2col(x, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, cols, lo, hi):
    """x (N, C, H, W) -> cols (C*kh*kw, N*out_h*out_w), zero where padded.

    Each output row splits into a zero head, a branch-free copy and a zero tail
    (plain loops: numba slice assignments cost more than a 16-pixel row).
    """
    n_img, channels, height, width = x.shape
    plane = out_h * out_w
    for row in numba.prange(lo, hi):
        c = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        x0 = kj * dw - pw
        ox_lo, ox_hi = _inside(x0, sw, width, out_w)
        for n in range(n_img):
            base = n * plane
            for oy in range(out_h):
                iy = oy * sh - ph + ki * dh
                offset = base + oy * out_w
                if iy < 0 or iy >= height:
                    for ox in range(out_w):
                        cols[row, offset + ox] = 0.0
                    continue
                for ox in range(ox_lo):
                    cols[row, offset + ox] = 0.0
                for ox in range(ox_lo, ox_hi):
                    cols[row, offset + ox] = x[n, c, iy, x0 + ox * sw]
                for ox in range(ox_hi, out_w):
                    cols[row, offset + ox] = 0.0


@numba.njit(parallel=True, **_JIT)
def col2im(cols, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, dx, lo, hi):
    """Scatter-add cols (C*kh*kw, N*out_h*out_w) back into dx (N, C, H, W) (overwritten)."""
    n_img, channels, height, width = dx.shape
    plane = out_h * out_w
    for c in numba.prange(lo, hi):
        for n in range(n_img):
            dx[n, c, :, :] = 0.0
            base = n * plane
            for ki in range(kh):
                for kj in range(kw):
                    row = (c * kh + ki) * kw + kj
                    x0 = kj * dw - pw
                    ox_lo, ox_hi = _inside(x0, sw, width, out_w)
                    for oy in range(out_h):
                        iy = oy * sh - ph + ki * dh
                        if iy < 0 or iy >= height:
                            continue
                        offset = base + oy * out_w
                        for ox in range(ox_lo, ox_hi):
                            dx[n, c, iy, x0 + ox * sw] += cols[row, offset + ox]
