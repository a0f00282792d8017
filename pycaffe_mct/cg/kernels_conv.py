"""numba kernels of convolution: unfolding images into GEMM columns and folding back.

Same conventions as ``kernels.py`` (pure functions of arrays and integers,
``nogil``, cached on disk, ``lo``/``hi`` select a range of units), with two
differences that make them fast:

* They are serial.  Convolution runs them on one chunk of images per host
  thread (see ``convolution.py``), so the columns a thread writes stay in its
  core's cache for the GEMM that reads them; the parallelism is across chunks.
* They address flat arrays with unsigned offsets.  numba wraps every signed
  index for Python's negative indexing, and that branch stops LLVM from
  vectorising the copy loops; unsigned offsets copy a row segment in a few
  vector instructions (12x faster on CIFAR-sized rows).  In numba, uint64 mixed
  with int64 gives float64, so every offset below is built from uint64 parts.
"""
import numba

_JIT = dict(nogil=True, cache=True)
_U = numba.uint64


@numba.njit(inline="always")
def _inside(first, stride, size, count):
    """[lo, hi) of the outputs o in [0, count) whose input first + o*stride is in [0, size)."""
    lo = 0 if first >= 0 else (-first + stride - 1) // stride
    hi = 0 if first >= size else (size - first + stride - 1) // stride
    return min(lo, count), max(min(lo, count), min(hi, count))


@numba.njit(inline="always")
def _fill_zero(flat, start, count):
    for i in range(_U(count)):
        flat[start + i] = 0.0


@numba.njit(**_JIT)
def im2col(x, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, cols, lo, hi):
    """x (N, C, H, W) -> cols (C*kh*kw, N*out_h*out_w), zero where padded; rows lo..hi.

    With padding the rows are first zeroed in one pass; then each image's
    output row copies its run of inputs inside the image.  (Zeroing the few padded columns of each
    run separately costs 4x more: LLVM turns every such loop into a memset call.)
    """
    n_img, channels, height, width = x.shape
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    plane = out_h * out_w
    if ph or pw:
        _fill_zero(dst, _U(lo * n_img * plane), (hi - lo) * n_img * plane)
    for row in range(lo, hi):
        c = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        x0 = kj * dw - pw
        ox_lo, ox_hi = _inside(x0, sw, width, out_w)
        run = _U(ox_hi - ox_lo)
        step = _U(sw)
        for n in range(n_img):
            image_row = _U(row * n_img * plane + n * plane)
            for oy in range(out_h):
                iy = oy * sh - ph + ki * dh
                d = image_row + _U(oy * out_w)
                if iy < 0 or iy >= height:
                    continue
                s = _U(((n * channels + c) * height + iy) * width + x0 + ox_lo * sw)
                t = d + _U(ox_lo)
                if sw == 1:
                    for i in range(run):
                        dst[t + i] = src[s + i]
                else:
                    for i in range(run):
                        dst[t + i] = src[s + i * step]


@numba.njit(**_JIT)
def col2im(cols, kh, kw, ph, pw, sh, sw, dh, dw, out_h, out_w, dx, c_lo, c_hi, n_lo, n_hi):
    """Scatter-add cols (C*kh*kw, N*out_h*out_w) into dx (N, C, H, W) (overwritten); the
    planes of channels c_lo..c_hi of images n_lo..n_hi."""
    n_img, channels, height, width = dx.shape
    src = cols.reshape(-1)
    dst = dx.reshape(-1)
    plane = out_h * out_w
    step = _U(sw)
    for c in range(c_lo, c_hi):
        for n in range(n_lo, n_hi):
            image = _U((n * channels + c) * height * width)
            _fill_zero(dst, image, height * width)
            for ki in range(kh):
                for kj in range(kw):
                    row = (c * kh + ki) * kw + kj
                    x0 = kj * dw - pw
                    ox_lo, ox_hi = _inside(x0, sw, width, out_w)
                    run = _U(ox_hi - ox_lo)
                    for oy in range(out_h):
                        iy = oy * sh - ph + ki * dh
                        if iy < 0 or iy >= height:
                            continue
                        s = _U(row * n_img * plane + n * plane + oy * out_w + ox_lo)
                        t = image + _U(iy * width + x0 + ox_lo * sw)
                        if sw == 1:
                            for i in range(run):
                                dst[t + i] += src[s + i]
                        else:
                            for i in range(run):
                                dst[t + i * step] += src[s + i]


@numba.njit(**_JIT)
def copy_planes(src, src_y, src_x, dst, dst_y, dst_x, zero_first, lo, hi):
    """dst[p, dst_y + i, dst_x + j] = src[p, src_y + i, src_x + j] over the smaller plane;
    planes p in lo..hi of (N, C, H, W) arrays, dst zeroed first if asked.

    Padding copies images into the middle of zeroed larger planes; unpadding
    copies the middle back out.
    """
    src_h, src_w = src.shape[2], src.shape[3]
    dst_h, dst_w = dst.shape[2], dst.shape[3]
    height, width = min(src_h, dst_h), min(src_w, dst_w)
    source = src.reshape(-1)
    target = dst.reshape(-1)
    if zero_first:
        _fill_zero(target, _U(lo * dst_h * dst_w), (hi - lo) * dst_h * dst_w)
    for plane in range(lo, hi):
        for i in range(height):
            s = _U((plane * src_h + src_y + i) * src_w + src_x)
            t = _U((plane * dst_h + dst_y + i) * dst_w + dst_x)
            for j in range(_U(width)):
                target[t + j] = source[s + j]
