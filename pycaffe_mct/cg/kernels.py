"""numba kernels: the code each compute element runs on its share of the work.

Every kernel here is a pure function of arrays and integers, compiled with
``cache=True`` so that a second process starts without recompiling, and
``nogil`` so that data-loading threads keep running meanwhile.  The ``lo``/``hi``
arguments select a range of the outermost loop's units: the scheduler passes
a CPE tile's range (literal mode) or all units at once (fast mode).  Arrays
are C-contiguous.

Speed: the kernels address flat views of their arrays with unsigned (uint64)
offsets.  numba guards every signed index against Python's negative indexing,
and that branch keeps LLVM from vectorising a loop; with unsigned offsets the
long innermost loops (ReLU, sums, softmax along inner positions, zeroing) run
in vector instructions.  Pooling windows are too short to vectorise (every
variant tried, tap-major rows, phase planes, gathers, was slower); there the
offsets save the wraparound branches and the window loops run unrolled.  In
numba, uint64 mixed with int64 gives float64, so every offset is built from
uint64 parts (``_U``).
"""
import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)
_U = numba.uint64
# Caffe starts every MAX window at -FLT_MAX, so an input must be larger to win.
_LOWEST_FLOAT32 = np.float32(-3.4028234663852886e38)


@numba.njit(inline="always")
def _window(index, stride, pad, kernel, size):
    """One axis of a pooling window: (first, end) clipped to the image, and the extent
    that divides an AVE window: it counts the padding but not what lies beyond it."""
    start = index * stride - pad
    stop = min(start + kernel, size + pad)
    return max(start, 0), min(stop, size), stop - start


@numba.njit(inline="always")
def _window_max(src, image, width, y0, y1, x0, columns):
    """(maximum, its index in the plane) of a window; the first maximum wins, and a value
    must exceed -FLT_MAX (index -1 otherwise).  Selects, not branches: random data
    costs no mispredictions."""
    best = _LOWEST_FLOAT32
    winner = np.int32(-1)
    for iy in range(y0, y1):
        first = _U(iy * width + x0)
        for ix in range(columns):
            value = src[image + first + ix]
            wins = value > best
            best = value if wins else best
            winner = np.int32(first + ix) if wins else winner
    return best, winner


@numba.njit(inline="always")
def _window_sum(src, image, width, y0, y1, x0, columns):
    """float32 sum of a window, row by row as Caffe adds it."""
    total = np.float32(0.0)
    for iy in range(y0, y1):
        first = image + _U(iy * width + x0)
        for ix in range(columns):
            total += src[first + ix]
    return total


@numba.njit(inline="always")
def _window_add(target, image, width, y0, y1, x0, columns, share):
    """Add share to every input of a window."""
    for iy in range(y0, y1):
        first = image + _U(iy * width + x0)
        for ix in range(columns):
            target[first + ix] += share


@numba.njit(parallel=True, **_JIT)
def max_pool_forward(x, kh, kw, sh, sw, ph, pw, out, argmax, lo, hi):
    """Caffe's MAX pooling of planes lo..hi: windows clipped to the image, first maximum wins.

    argmax holds the winner's index in its plane (y * width + x).  Windows 2 or
    3 wide get a literal width, which LLVM unrolls.
    """
    _, _, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    src, dst, where = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for plane in numba.prange(lo, hi):
        image = _U(plane * height * width)
        for oy in range(out_h):
            y0, y1, _ = _window(oy, sh, ph, kh, height)
            row = _U((plane * out_h + oy) * out_w)
            for ox in range(out_w):
                x0, x1, _ = _window(ox, sw, pw, kw, width)
                if x1 - x0 == 3:
                    best, winner = _window_max(src, image, width, y0, y1, x0, _U(3))
                elif x1 - x0 == 2:
                    best, winner = _window_max(src, image, width, y0, y1, x0, _U(2))
                else:
                    best, winner = _window_max(src, image, width, y0, y1, x0, _U(x1 - x0))
                dst[row + _U(ox)] = best
                where[row + _U(ox)] = winner


@numba.njit(parallel=True, **_JIT)
def max_pool_backward(dy, argmax, dx, lo, hi):
    """Route each output gradient of planes lo..hi to the input that won its window."""
    in_plane = _U(dx.shape[2] * dx.shape[3])
    out_plane = _U(dy.shape[2] * dy.shape[3])
    grad, where, target = dy.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    for plane in numba.prange(lo, hi):
        image = _U(plane) * in_plane
        for i in range(in_plane):
            target[image + i] = 0.0
        row = _U(plane) * out_plane
        for i in range(out_plane):
            winner = where[row + i]
            if winner >= 0:
                target[image + _U(winner)] += grad[row + i]


@numba.njit(**_JIT)
def _ave_divisors(kh, kw, sh, sw, ph, pw, height, width, out_h, out_w):
    """Each output's AVE divisor (the same in every plane), a float32 as in Caffe."""
    divisors = np.empty(out_h * out_w, np.float32)
    for oy in range(out_h):
        extent_h = _window(oy, sh, ph, kh, height)[2]
        for ox in range(out_w):
            divisors[oy * out_w + ox] = extent_h * _window(ox, sw, pw, kw, width)[2]
    return divisors


@numba.njit(parallel=True, **_JIT)
def ave_pool_forward(x, kh, kw, sh, sw, ph, pw, out, lo, hi):
    """Caffe's AVE pooling of planes lo..hi: a float32 window sum over the divisor
    (windows 2 or 3 wide unrolled, as in MAX pooling)."""
    _, _, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    divisors = _ave_divisors(kh, kw, sh, sw, ph, pw, height, width, out_h, out_w)
    src, dst = x.reshape(-1), out.reshape(-1)
    for plane in numba.prange(lo, hi):
        image = _U(plane * height * width)
        pooled = _U(plane * out_h * out_w)
        for oy in range(out_h):
            y0, y1, _ = _window(oy, sh, ph, kh, height)
            row = _U(oy * out_w)
            for ox in range(out_w):
                x0, x1, _ = _window(ox, sw, pw, kw, width)
                if x1 - x0 == 3:
                    total = _window_sum(src, image, width, y0, y1, x0, _U(3))
                elif x1 - x0 == 2:
                    total = _window_sum(src, image, width, y0, y1, x0, _U(2))
                else:
                    total = _window_sum(src, image, width, y0, y1, x0, _U(x1 - x0))
                dst[pooled + row + _U(ox)] = total / divisors[row + _U(ox)]


@numba.njit(parallel=True, **_JIT)
def ave_pool_backward(dy, kh, kw, sh, sw, ph, pw, dx, lo, hi):
    """Spread each output gradient of planes lo..hi evenly over its window (Caffe's order)."""
    _, _, height, width = dx.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    divisors = _ave_divisors(kh, kw, sh, sw, ph, pw, height, width, out_h, out_w)
    grad, target = dy.reshape(-1), dx.reshape(-1)
    for plane in numba.prange(lo, hi):
        image = _U(plane * height * width)
        for i in range(_U(height * width)):
            target[image + i] = 0.0
        pooled = _U(plane * out_h * out_w)
        for oy in range(out_h):
            y0, y1, _ = _window(oy, sh, ph, kh, height)
            row = _U(oy * out_w)
            for ox in range(out_w):
                x0, x1, _ = _window(ox, sw, pw, kw, width)
                share = grad[pooled + row + _U(ox)] / divisors[row + _U(ox)]
                if x1 - x0 == 3:
                    _window_add(target, image, width, y0, y1, x0, _U(3), share)
                elif x1 - x0 == 2:
                    _window_add(target, image, width, y0, y1, x0, _U(2), share)
                else:
                    _window_add(target, image, width, y0, y1, x0, _U(x1 - x0), share)


# Softmax works on blocks of at most this many inner positions, so that a single
# image's spatial softmax still spreads over the threads.
_SOFTMAX_BLOCK = 2048


@numba.njit(inline="always")
def _softmax_block(task, lo, channels, inner):
    """(offset of channel 0, length) of the task-th block of inner positions of outer lo..."""
    blocks = (inner + _SOFTMAX_BLOCK - 1) // _SOFTMAX_BLOCK
    o, block = lo + task // blocks, task % blocks
    first = block * _SOFTMAX_BLOCK
    return _U(o * channels * inner + first), _U(min(inner - first, _SOFTMAX_BLOCK))


@numba.njit(inline="always")
def _softmax_tasks(lo, hi, inner):
    return (hi - lo) * ((inner + _SOFTMAX_BLOCK - 1) // _SOFTMAX_BLOCK)


@numba.njit
def _channel_totals(values, weights, base, span, channels, inner):
    """float64 sums over channels of values (times weights, unless None) at a block of
    inner positions; numba compiles the None case without the product."""
    totals = np.zeros(span, np.float64)
    for c in range(channels):
        row = base + _U(c * inner)
        for i in range(span):
            if weights is None:
                totals[i] += values[row + i]
            else:
                totals[i] += values[row + i] * weights[row + i]
    return totals


@numba.njit
def _row_total(values, weights, base, channels):
    """float64 sum over the channels of one contiguous row of values (times weights,
    unless None): _channel_totals for a row with one inner position."""
    total = 0.0
    for c in range(_U(channels)):
        if weights is None:
            total += values[base + c]
        else:
            total += values[base + c] * weights[base + c]
    return total


@numba.njit(parallel=True, **_JIT)
def softmax_shift(x, out, lo, hi):
    """out = x minus its maximum over axis 1 of (outer, channels, inner), for outer lo..hi.

    The first step of Caffe's softmax; out may be x.  The exponential is left
    to the caller (numpy's is vectorised, numba's is one call per element).
    """
    _, channels, inner = x.shape
    src, dst = x.reshape(-1), out.reshape(-1)
    if inner == 1:                              # classifier outputs: contiguous rows
        for o in numba.prange(lo, hi):
            base = _U(o * channels)
            top = src[base]
            for c in range(_U(1), _U(channels)):
                top = max(top, src[base + c])
            for c in range(_U(channels)):
                dst[base + c] = src[base + c] - top
        return
    for task in numba.prange(_softmax_tasks(lo, hi, inner)):
        base, span = _softmax_block(task, lo, channels, inner)
        top = np.empty(span, np.float32)
        for i in range(span):
            top[i] = src[base + i]
        for c in range(1, channels):
            row = base + _U(c * inner)
            for i in range(span):
                top[i] = max(top[i], src[row + i])
        for c in range(channels):
            row = base + _U(c * inner)
            for i in range(span):
                dst[row + i] = src[row + i] - top[i]


@numba.njit(parallel=True, **_JIT)
def softmax_normalize(out, lo, hi):
    """Divide out (outer, channels, inner) by its sums over channels (float64), outer lo..hi."""
    _, channels, inner = out.shape
    dst = out.reshape(-1)
    if inner == 1:
        for o in numba.prange(lo, hi):
            base = _U(o * channels)
            total = _row_total(dst, None, base, channels)
            for c in range(_U(channels)):
                dst[base + c] /= total
        return
    for task in numba.prange(_softmax_tasks(lo, hi, inner)):
        base, span = _softmax_block(task, lo, channels, inner)
        totals = _channel_totals(dst, None, base, span, channels, inner)
        for c in range(channels):
            row = base + _U(c * inner)
            for i in range(span):
                dst[row + i] /= totals[i]


@numba.njit(parallel=True, **_JIT)
def softmax_backward(y, dy, dx, lo, hi):
    """dx = (dy - sum_c dy*y) * y over axis 1 of (outer, channels, inner), outer lo..hi."""
    _, channels, inner = y.shape
    prob, grad, target = y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    if inner == 1:
        for o in numba.prange(lo, hi):
            base = _U(o * channels)
            dot = _row_total(grad, prob, base, channels)
            for c in range(_U(channels)):
                target[base + c] = (grad[base + c] - dot) * prob[base + c]
        return
    for task in numba.prange(_softmax_tasks(lo, hi, inner)):
        base, span = _softmax_block(task, lo, channels, inner)
        dots = _channel_totals(grad, prob, base, span, channels, inner)
        for c in range(channels):
            row = base + _U(c * inner)
            for i in range(span):
                target[row + i] = (grad[row + i] - dots[i]) * prob[row + i]


_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@numba.njit(parallel=True, **_JIT)
def relu_forward(x, slope, out):
    """Caffe's formula on flat arrays: max(x, 0) + slope * min(x, 0) (slope a float32)."""
    for i in numba.prange(_U(x.size)):
        value = x[i]
        out[i] = (_ZERO if value < 0 else value) + slope * (_ZERO if 0 < value else value)


@numba.njit(parallel=True, **_JIT)
def relu_backward(x, dy, slope, dx):
    """Caffe's formula on flat arrays: dx = dy * ((x > 0) + slope * (x <= 0)); dx may be dy."""
    for i in numba.prange(_U(x.size)):
        value = x[i]
        dx[i] = dy[i] * ((_ONE if value > 0 else _ZERO) + slope * (_ONE if value <= 0 else _ZERO))


@numba.njit(parallel=True, **_JIT)
def channel_linear(arrays, coeffs, shift, out, lo, hi):
    """Rows lo..hi of out (rows, inner) = sum_t coeffs[t, row] * arrays[t] (+ shift[row]).

    The terms add in order in float32, as numpy's ``out = a0*c0; out += a1*c1``
    does; ``shift`` of length 0 means none.  out may be arrays[0].
    """
    inner = _U(out.shape[1])
    dst = out.reshape(-1)
    for row in numba.prange(lo, hi):
        start = _U(row) * inner
        first, coeff = arrays[0].reshape(-1), coeffs[0, row]
        for i in range(inner):
            dst[start + i] = first[start + i] * coeff
        for term in range(1, len(arrays)):
            src, coeff = arrays[term].reshape(-1), coeffs[term, row]
            for i in range(inner):
                dst[start + i] += src[start + i] * coeff
        if shift.size:
            offset = shift[row]
            for i in range(inner):
                dst[start + i] += offset


# Element-wise kernels of several terms work on blocks this long: each term's pass over a
# block is one vectorised loop, and the block stays in the L1 cache between passes.
_TERMS_BLOCK = 4096


@numba.njit(parallel=True, **_JIT)
def weighted_sum(arrays, coeffs, out):
    """out = sum_t coeffs[t] * arrays[t] on flat arrays, the terms added in order in float32
    (numpy's ``out = a0*c0; out += a1*c1`` to the bit, in one pass over memory)."""
    size = out.size
    for block in numba.prange((size + _TERMS_BLOCK - 1) // _TERMS_BLOCK):
        start = _U(block * _TERMS_BLOCK)
        count = _U(min(size - block * _TERMS_BLOCK, _TERMS_BLOCK))
        first, coeff = arrays[0], coeffs[0]
        for i in range(count):
            out[start + i] = first[start + i] * coeff
        for term in range(1, len(arrays)):
            array, coeff = arrays[term], coeffs[term]
            for i in range(count):
                out[start + i] += array[start + i] * coeff
