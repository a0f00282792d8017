"""The narrow interface between layers and the core-group back end.

Layers call these named operations with whole arrays and know nothing about
tiles, CPEs or numba.  Each operation hands its work to the core-group
scheduler (``scheduler.py``) as a GEMM or as a kernel over independent units
with per-unit bytes and flops; the scheduler plans tiles that fit the local
stores, assigns them to the 8x8 mesh, runs them and lets the accounting read
the plan.  Swapping a plan never changes a layer.

Conventions: arrays are float32 and C-contiguous; ``out`` arguments are
written, never accumulated into, unless the name says ``accumulate``.
"""
import numpy as np

from . import (kernels, kernels_loss, kernels_normalization, kernels_rank, kernels_reduce,
               scheduler)
from .convolution import (  # noqa: F401  (part of this interface)
    Window, col2im, conv_out_size, convolve, convolve_transpose, im2col)


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``out = alpha * op(a) @ op(b) + beta * out`` (BLAS sgemm semantics)."""
    left = a.T if trans_a else a
    right = b.T if trans_b else b
    return scheduler.gemm(left, right, alpha, beta, out)


def _planes(kernel_name, x_plane, y_plane, planes, in_bytes, out_bytes, flops, run):
    """A kernel whose unit is one (image, channel) plane; sizes are in elements per plane."""
    scheduler.units(kernel_name, planes, in_bytes * x_plane, out_bytes * y_plane,
                    flops * y_plane, run)


def max_pool_forward(x, kernel, stride, pad, out, argmax):
    n_img, channels, height, width = x.shape
    _planes("max_pool_forward", height * width, out.shape[2] * out.shape[3],
            n_img * channels, x.itemsize, out.itemsize + argmax.itemsize,
            kernel[0] * kernel[1],
            lambda lo, hi: kernels.max_pool_forward(x, kernel[0], kernel[1], stride[0],
                                                    stride[1], pad[0], pad[1], out, argmax,
                                                    lo, hi))


def max_pool_backward(dy, argmax, dx):
    n_img, channels, height, width = dx.shape
    # Per plane: dy and argmax in, dx out.
    _planes("max_pool_backward", dy.shape[2] * dy.shape[3], height * width,
            n_img * channels, dy.itemsize + argmax.itemsize, dx.itemsize, 0,
            lambda lo, hi: kernels.max_pool_backward(dy, argmax, dx, lo, hi))


def ave_pool_forward(x, kernel, stride, pad, out):
    n_img, channels, height, width = x.shape
    _planes("ave_pool_forward", height * width, out.shape[2] * out.shape[3],
            n_img * channels, x.itemsize, out.itemsize, kernel[0] * kernel[1],
            lambda lo, hi: kernels.ave_pool_forward(x, kernel[0], kernel[1], stride[0],
                                                    stride[1], pad[0], pad[1], out, lo, hi))


def ave_pool_backward(dy, kernel, stride, pad, dx):
    n_img, channels, height, width = dx.shape
    _planes("ave_pool_backward", dy.shape[2] * dy.shape[3], height * width,
            n_img * channels, dy.itemsize, dx.itemsize, 0,
            lambda lo, hi: kernels.ave_pool_backward(dy, kernel[0], kernel[1], stride[0],
                                                     stride[1], pad[0], pad[1], dx, lo, hi))


def softmax_forward(x, out):
    """Softmax over axis 1 of (outer, channels, inner) arrays."""
    per_outer = x.shape[1] * x.shape[2]
    scheduler.units("softmax_forward", x.shape[0], per_outer * x.itemsize,
                    per_outer * out.itemsize, 4 * per_outer,
                    lambda lo, hi: _softmax_outer(x, out, lo, hi))


def _softmax_outer(x, out, lo, hi):
    """Softmax of outer lo..hi: max-subtract and normalise in numba, the exponential in numpy."""
    kernels.softmax_shift(x, out, lo, hi)
    np.exp(out[lo:hi], out=out[lo:hi])
    kernels.softmax_normalize(out, lo, hi)


def softmax_backward(y, dy, dx):
    per_outer = y.shape[1] * y.shape[2]
    scheduler.units("softmax_backward", y.shape[0], 2 * per_outer * y.itemsize,
                    per_outer * dx.itemsize, 4 * per_outer,
                    lambda lo, hi: kernels.softmax_backward(y, dy, dx, lo, hi))


def relu_forward(x, negative_slope, out):
    slope = np.float32(negative_slope)
    scheduler.elementwise("relu_forward", 2 if negative_slope else 1, lambda x, out:
                          kernels.relu_forward(x.reshape(-1), slope, out.reshape(-1)), out, x)


def relu_backward(x, dy, negative_slope, dx):
    """x is the forward input (or output: their signs agree); dx may alias dy."""
    slope = np.float32(negative_slope)
    scheduler.elementwise("relu_backward", 2, lambda x, dy, dx: kernels.relu_backward(
        x.reshape(-1), dy.reshape(-1), slope, dx.reshape(-1)), dx, x, dy)


def _sigmoid(x, out):
    # 0.5 * tanh(0.5 x) + 0.5 is the overflow-free form of 1 / (1 + exp(-x)).
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5


def sigmoid_forward(x, out):
    scheduler.elementwise("sigmoid_forward", 4, _sigmoid, out, x)


def sigmoid_backward(y, dy, dx):
    scheduler.elementwise("sigmoid_backward", 3,
                          lambda y, dy, dx: np.multiply(dy, y * (1 - y), out=dx), dx, y, dy)


def tanh_forward(x, out):
    scheduler.elementwise("tanh_forward", 4, lambda x, out: np.tanh(x, out=out), out, x)


def tanh_backward(y, dy, dx):
    scheduler.elementwise("tanh_backward", 3,
                          lambda y, dy, dx: np.multiply(dy, 1 - y * y, out=dx), dx, y, dy)


def _affine(x, shift, scale):
    return shift + scale * x


# Element-wise formulas of the activation and loss layers: name -> (flops per element,
# function of the inputs, out and named float32 constants).  ``pointwise`` runs any of them.
_FORMULAS = {
    "abs": (1, lambda x, out: np.abs(x, out=out)),
    "abs_backward": (2, lambda x, dy, out: np.multiply(dy, np.sign(x), out=out)),
    "elu": (4, lambda x, out, alpha: np.copyto(
        out, np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))),
    "elu_backward": (3, lambda y, dy, out, alpha: np.multiply(
        dy, np.where(y > 0, np.float32(1), y + alpha), out=out)),
    "power": (6, lambda x, out, shift, scale, power: np.power(
        _affine(x, shift, scale), power, out=out)),
    "power_backward": (8, lambda x, dy, out, shift, scale, gain, exponent: np.multiply(
        dy, gain * (_affine(x, shift, scale) ** exponent if exponent != 0 else np.float32(1)),
        out=out)),
    "exp": (6, lambda x, out, shift, scale: np.exp(_affine(x, shift, scale), out=out)),
    "exp_backward": (3, lambda y, dy, out, scale: np.multiply(dy, y * scale, out=out)),
    "log": (6, lambda x, out, shift, scale, factor: np.multiply(
        np.log(_affine(x, shift, scale)), factor, out=out)),
    "log_backward": (4, lambda x, dy, out, shift, scale, factor: np.multiply(
        dy, factor / _affine(x, shift, scale), out=out)),
    "bnll": (6, lambda x, out: np.add(np.maximum(x, 0), np.log1p(np.exp(-np.abs(x))), out=out)),
    "threshold": (1, lambda x, out, threshold: np.greater(x, threshold, out=out,
                                                          casting="unsafe")),
    "clip": (2, lambda x, out, low, high: np.clip(x, low, high, out=out)),
    "clip_backward": (3, lambda x, dy, out, low, high: np.multiply(
        dy, (x >= low) & (x <= high), out=out)),
    "prelu": (3, lambda x, slopes, out: np.add(np.maximum(x, 0), slopes * np.minimum(x, 0),
                                               out=out)),
    "prelu_backward": (2, lambda x, slopes, dy, out: np.multiply(
        dy, np.where(x > 0, np.float32(1), slopes), out=out)),
    "negative_part": (1, lambda x, out: np.multiply(x, x <= 0, out=out)),
    "swish_backward": (5, lambda y, s, dy, out, beta: np.multiply(
        dy, beta * y + s * (1 - beta * y), out=out)),
    # -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) in Caffe's overflow-free form.
    "sigmoid_cross_entropy": (9, lambda x, t, out: np.subtract(
        np.log1p(np.exp(x - 2 * x * (x >= 0))), x * (t - (x >= 0)), out=out)),
    # 1 where a target counts, 0 where it is ignore_label (compared as Caffe's int cast).
    "kept_target": (2, lambda t, out, ignore: np.not_equal(np.trunc(t), ignore, out=out,
                                                            casting="unsafe")),
}


def pointwise(formula, out, *inputs, **constants):
    """out = the named element-wise ``formula`` of ``inputs`` (broadcast to out's shape),
    with float32 ``constants``; see ``_FORMULAS`` for the names and their arguments."""
    flops, function = _FORMULAS[formula]
    scheduler.elementwise(formula, flops, lambda *arrays: function(*arrays, **constants),
                          out, *inputs)


def scale_into(x, factor, out):
    """out = x * factor, with factor a scalar or a broadcastable array."""
    if np.ndim(factor) == 0:
        _weighted_sum("scale", [x], out, [factor])
        return
    scheduler.elementwise("scale", 1, lambda x, f, out: np.multiply(x, f, out=out),
                          out, x, factor)


def sum_into(arrays, out, coeffs=None):
    """out = sum_i coeffs[i] * arrays[i] (arrays of out's size)."""
    _weighted_sum("sum", arrays, out, coeffs or [1.0] * len(arrays))


def _weighted_sum(kernel_name, arrays, out, coeffs):
    """out = sum_i coeffs[i] * arrays[i] in float32, in order, in one numba pass."""
    factors = np.asarray(coeffs, np.float32)

    def weighted_sum(*args):
        *inputs, target = args
        flats = tuple(np.ascontiguousarray(x, np.float32).reshape(-1) for x in inputs)
        kernels.weighted_sum(flats, factors, target.reshape(-1))
    scheduler.elementwise(kernel_name, 2 * len(arrays) - 1, weighted_sum, out, *arrays)


def copy_into(x, out):
    """out = x (a kept copy, e.g. of a top that the next layer may change in place)."""
    scheduler.elementwise("copy", 0, lambda x, out: np.copyto(out, x), out, x)


def product_into(factors, out, divisor=None):
    """out = the element-wise product of two or more ``factors``, divided by ``divisor``."""
    count = len(factors)

    def product(*args):
        target = args[-1]
        np.multiply(args[0], args[1], out=target)
        for factor in args[2:count]:
            target *= factor
        if divisor is not None:
            np.divide(target, args[count], out=target)
    inputs = list(factors) + ([] if divisor is None else [divisor])
    scheduler.elementwise("product", len(inputs) - 1, product, out, *inputs)


def max_into(arrays, out, argmax):
    """out = the element-wise maximum of ``arrays``; argmax = the index of the first array
    holding it (ties go to the earliest, as in Caffe)."""
    flats = [array.reshape(-1) for array in arrays]
    flat_out, flat_argmax = out.reshape(-1), argmax.reshape(-1)

    def run(lo, hi):
        target, where = flat_out[lo:hi], flat_argmax[lo:hi]
        target[...] = flats[0][lo:hi]
        where[...] = 0
        for index, array in enumerate(flats[1:], 1):
            part = array[lo:hi]
            where[part > target] = index
            np.maximum(target, part, out=target)
    scheduler.units("max", out.size, len(arrays) * out.itemsize,
                    out.itemsize + argmax.itemsize, len(arrays) - 1, run)


def select_into(dy, argmax, index, dx):
    """dx = dy where argmax == index, else 0 (the gradient route of ``max_into``)."""
    scheduler.elementwise("select", 1, lambda dy, argmax, dx: np.multiply(
        dy, argmax == index, out=dx), dx, dy, argmax)


def weighted_difference(a, b, out, scale=1.0, weights=None):
    """out = (a - b) * weights * scale; weights (a 0/1 mask, say) broadcast to out."""
    factor = np.float32(scale)

    def difference(a, b, *rest):
        target = rest[-1]
        np.subtract(a, b, out=target)
        if len(rest) == 2:
            target *= rest[0]
        if factor != 1:
            target *= factor
    inputs = (a, b) if weights is None else (a, b, weights)
    scheduler.elementwise("weighted_difference", len(inputs), difference, out, *inputs)


def dot(a, b):
    """The sum of a * b over all elements, as a Python float (loss values)."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    partials = []
    scheduler.units("dot", a.size, a.itemsize + b.itemsize, 0, 2,
                    lambda lo, hi: partials.append(float(np.dot(flat_a[lo:hi], flat_b[lo:hi]))))
    return sum(partials)


def label_gradient(prob, labels, weights, scale, out):
    """out = (prob - one_hot(labels)) * weights * scale over axis 1 of (outer, C, inner)
    arrays; labels (integers) and weights are (outer, inner): SoftmaxWithLoss's gradient."""
    outer, channels, inner = prob.shape
    columns = np.arange(inner)[None, :]

    def run(lo, hi):
        target = out[lo:hi]
        np.copyto(target, prob[lo:hi])
        target[np.arange(hi - lo)[:, None], labels[lo:hi], columns] -= 1.0
        target *= weights[lo:hi, None, :]
        target *= np.float32(scale)
    per_outer = channels * inner
    scheduler.units("label_gradient", outer,
                    per_outer * prob.itemsize + inner * (labels.itemsize + weights.itemsize),
                    per_outer * out.itemsize, 2 * per_outer, run)


def channel_linear(terms, out, shift=None):
    """out = sum of coeff[c] * array over ``terms`` (array, coeff) pairs, plus shift[c].

    Arrays and out are (outer, C, inner); coefficients and shift are scalars or
    (C,) arrays.  This is the per-channel affine map of BatchNorm and Scale and
    the combination of their gradients.  out may alias the first term's array.
    """
    outer, channels, inner = out.shape
    rows = outer * channels
    target_rows = out.reshape(rows, inner)
    arrays = tuple(np.ascontiguousarray(array.reshape(rows, inner), np.float32)
                   for array, _ in terms)
    coeffs = np.stack([_per_row(coeff, outer, channels) for _, coeff in terms])
    shifts = np.empty(0, np.float32) if shift is None else _per_row(shift, outer, channels)
    per_channel = len(terms) + (shift is not None)
    # Unit: one (outer, channel) row with its coefficients.
    scheduler.units("channel_linear", rows, (len(terms) * inner + per_channel) * out.itemsize,
                    inner * out.itemsize, (2 * per_channel - 1) * inner,
                    lambda lo, hi: kernels.channel_linear(arrays, coeffs, shifts, target_rows,
                                                          lo, hi))


def _per_row(coeff, outer, channels):
    """A scalar or (C,) coefficient as an (outer * C,) array: one entry per row."""
    column = np.asarray(coeff, np.float32).reshape(-1)
    return np.broadcast_to(column, (outer, channels)).reshape(-1)


# ---- layer zoo: normalisation and cropping ---------------------------------
def lrn_across_forward(x, size, alpha, beta, k, scale, out):
    """Caffe's ACROSS_CHANNELS LRN of x viewed (N, C, S); scale keeps k + alpha/size*sum."""
    column = x.shape[0] * x.shape[1]      # unit: one pixel, all images and channels
    scheduler.units("lrn_forward", x.shape[2], column * x.itemsize, 2 * column * out.itemsize,
                    (2 * size + 4) * column,
                    lambda lo, hi: _lrn_forward_pixels(x, size, alpha, beta, k, scale, out,
                                                       lo, hi))


def _lrn_forward_pixels(x, size, alpha, beta, k, scale, out, lo, hi):
    """LRN of pixels lo..hi: the window sums in numba, the power in numpy (see lrn_scale)."""
    kernels_normalization.lrn_scale(x, size, alpha, k, scale, lo, hi)
    np.power(scale[:, :, lo:hi], np.float32(-beta), out=out[:, :, lo:hi])
    out[:, :, lo:hi] *= x[:, :, lo:hi]


def lrn_across_backward(x, y, scale, dy, size, alpha, beta, dx):
    """dx of ACROSS_CHANNELS LRN; dx must not alias dy."""
    column = x.shape[0] * x.shape[1]      # unit: one pixel, all images and channels
    scheduler.units("lrn_backward", x.shape[2], 4 * column * x.itemsize, column * dx.itemsize,
                    (3 * size + 6) * column,
                    lambda lo, hi: kernels_normalization.lrn_across_backward(
                        x, y, scale, dy, size, alpha, beta,
                        _power_into(scale, -beta, dx, lo, hi), lo, hi))


def _power_into(x, exponent, out, lo, hi):
    """out[:, :, lo:hi] = x[:, :, lo:hi] ** exponent (float32, numpy's vectorised power)."""
    np.power(x[:, :, lo:hi], np.float32(exponent), out=out[:, :, lo:hi])
    return out


def channel_mean_var(x):
    """Per-channel mean and biased variance of x (N, C, S), as float32 (C,) arrays."""
    mean = np.empty(x.shape[1], np.float32)
    var = np.empty(x.shape[1], np.float32)
    _per_channel("channel_mean_var", x.shape, 1, 3,
                 lambda lo, hi: kernels_normalization.channel_mean_var(x, mean, var, lo, hi))
    return mean, var


def channel_sums(a, b):
    """Per-channel sums of a and a*b over axes 0 and 2 of (N, C, S) arrays."""
    sum_a = np.empty(a.shape[1], np.float32)
    sum_ab = np.empty(a.shape[1], np.float32)
    _per_channel("channel_sums", a.shape, 2, 3,
                 lambda lo, hi: kernels_normalization.channel_sums(a, b, sum_a, sum_ab, lo, hi))
    return sum_a, sum_ab


def _per_channel(kernel_name, shape, arrays, flops, run):
    """A reduction whose unit is one channel of ``arrays`` (N, C, S) float32 inputs."""
    n_img, channels, plane = shape
    scheduler.units(kernel_name, channels, arrays * n_img * plane * 4, 2 * 4,
                    flops * n_img * plane, run)


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


def _rows(kernel_name, out, run):
    """A copy whose unit is one index of out's first axis."""
    row = out[0].size * out.itemsize if out.size else 0
    scheduler.units(kernel_name, out.shape[0], row, row, 0, run)


def _window(offsets, shape):
    return tuple(slice(o, o + n) for o, n in zip(offsets, shape))


# ---- per-channel bias (Convolution, InnerProduct) ----------------------------
def add_channel_bias(y, bias):
    """y (outer, channels, inner) += bias[channel]."""
    outer, channels, inner = y.shape
    per_outer = channels * inner * y.itemsize
    scheduler.units("bias_forward", outer, per_outer + bias.nbytes, per_outer,
                    channels * inner,
                    lambda lo, hi: np.add(y[lo:hi], bias.reshape(1, -1, 1), out=y[lo:hi]))


def accumulate_channel_bias_grad(dy, bias_diff):
    """bias_diff[channel] += the sum of dy (outer, channels, inner) over outer and inner.

    Two kernels, so that a few channels still spread over the whole mesh: every
    (outer, channel) row of dy is summed to a partial sum, then each channel's
    partial sums are added into bias_diff.
    """
    outer, channels, inner = dy.shape
    rows = dy.reshape(outer * channels, inner)
    partial = np.empty((outer, channels), np.float32)
    partial_flat = partial.reshape(-1)

    def row_sums(lo, hi):
        np.sum(rows[lo:hi], axis=1, out=partial_flat[lo:hi])

    def channel_sums(lo, hi):
        bias_diff[lo:hi] += partial[:, lo:hi].sum(axis=0)
    scheduler.units("bias_backward", outer * channels, inner * dy.itemsize, partial.itemsize,
                    inner, row_sums)
    scheduler.units("bias_backward_reduce", channels, (outer + 1) * partial.itemsize,
                    bias_diff.itemsize, outer, channel_sums)


# ---- reductions, MVN, within-channel LRN, embed ----

_REDUCE_OPERATIONS = {"sum": kernels_reduce.SUM, "asum": kernels_reduce.ASUM,
                      "sumsq": kernels_reduce.SUMSQ, "mean": kernels_reduce.SUM}


def _row_factor(operation, length, coeff):
    """The factor of a row reduction: coeff, divided by the row length for a mean."""
    return coeff / length if operation == "mean" and length else coeff


def row_reduce(x, operation, coeff, out):
    """out[r] = coeff * the SUM, ASUM (sum of |x|), SUMSQ or MEAN of row r of x (rows, length)."""
    rows, length = x.shape
    flat = x.reshape(-1)
    # Unit: one row in, one value out; |x| and x^2 cost a flop more than the add.
    scheduler.units("reduce_" + operation, rows, length * x.itemsize, out.itemsize,
                    length * (1 if operation in ("sum", "mean") else 2),
                    lambda lo, hi: kernels_reduce.row_reduce(
                        flat, length, _REDUCE_OPERATIONS[operation],
                        _row_factor(operation, length, coeff), out, lo, hi))


def row_reduce_backward(x, dy, operation, coeff, dx):
    """dx of ``row_reduce``: coeff * dy[r] times 1, sign(x), 2x or 1/length, over row r."""
    rows, length = x.shape
    x_flat, dx_flat = x.reshape(-1), dx.reshape(-1)
    reads_x = operation in ("asum", "sumsq")
    scheduler.units("reduce_" + operation + "_backward", rows,
                    (length * reads_x + 1) * x.itemsize, length * dx.itemsize,
                    length * (1 + reads_x),
                    lambda lo, hi: kernels_reduce.row_reduce_backward(
                        x_flat, dy, length, _REDUCE_OPERATIONS[operation],
                        _row_factor(operation, length, coeff), dx_flat, lo, hi))


def normalize_rows(x, mean, divisor, out):
    """out = (x - mean[r]) / divisor[r] over each row r of x (rows, length); out may alias x."""
    rows, length = x.shape
    x_flat, out_flat = x.reshape(-1), out.reshape(-1)
    scheduler.units("normalize_rows", rows, (length + 2) * x.itemsize, length * out.itemsize,
                    2 * length,
                    lambda lo, hi: kernels_reduce.normalize_rows(
                        x_flat, mean, divisor, length, out_flat, lo, hi))


def tile_sum(dy, dx):
    """dx (outer, inner) = the sum of dy (outer, tiles, inner) over its middle axis
    (the gradient of repeating a block ``tiles`` times)."""
    outer, tiles, inner = dy.shape
    dy_flat, dx_flat = dy.reshape(-1), dx.reshape(-1)
    scheduler.units("tile_sum", outer, tiles * inner * dy.itemsize, inner * dx.itemsize,
                    (tiles - 1) * inner,
                    lambda lo, hi: kernels_reduce.tile_sum(dy_flat, tiles, inner, dx_flat,
                                                           lo, hi))


def embed_forward(weight, indices, bias, out):
    """out row p = weight row indices[p] (+ bias); weight (rows, width), out (count, width)."""
    width = weight.shape[1]
    bias = np.empty(0, np.float32) if bias is None else bias
    weight_flat, out_flat = weight.reshape(-1), out.reshape(-1)
    row = width * out.itemsize
    # Unit: one looked-up row (its index, the weight row and the bias in, the row out).
    scheduler.units("embed_forward", len(indices), indices.itemsize + row + bias.nbytes, row,
                    width if bias.size else 0,
                    lambda lo, hi: kernels_reduce.embed_forward(
                        weight_flat, indices, bias, width, out_flat, lo, hi))


def embed_accumulate_weight_grad(dy, indices, dweight):
    """dweight row i += the sum of the dy rows whose index is i (dy (count, width)).

    The host sorts the indices (bookkeeping on integers); each CPE unit then owns
    one distinct weight row, so no two units add into the same row.
    """
    width = dweight.shape[1]
    order = np.argsort(indices, kind="stable")
    rows, starts = np.unique(indices[order], return_index=True)
    bounds = np.append(starts, len(indices)).astype(np.int64)
    dy_flat, dweight_flat = dy.reshape(-1), dweight.reshape(-1)
    # Per unit, the average number of dy rows a distinct index gathers.
    gathered = -(-len(indices) // max(len(rows), 1))
    row = width * dweight.itemsize
    scheduler.units("embed_weight_grad", len(rows), gathered * (row + indices.itemsize) + row,
                    row, gathered * width,
                    lambda lo, hi: kernels_reduce.embed_weight_grad(
                        dy_flat, order, rows, bounds, width, dweight_flat, lo, hi))


_FORMULAS.update({
    # WITHIN_CHANNEL LRN: y = x * scale^-beta, its gradient through the pooled squares.
    "power_scaled": (7, lambda x, base, out, exponent: np.multiply(x, base ** exponent,
                                                                   out=out)),
    "ratio_product": (3, lambda a, b, c, out, factor: np.multiply(a * b / c, factor, out=out)),
    "lrn_within_backward": (10, lambda dy, scale, x, d_square, out, beta: np.add(
        dy * scale ** -beta, 2 * x * d_square, out=out)),
})


def lrn_within_forward(x, size, alpha, beta, scale, out):
    """WITHIN_CHANNEL LRN of x (N, C, H, W): scale = 1 + alpha * the size x size average
    (padded cells counted) of x^2, out = x * scale^-beta."""
    pad = (size - 1) // 2
    product_into([x, x], out)                          # out holds x^2 until the last step
    ave_pool_forward(out, (size, size), (1, 1), (pad, pad), scale)
    planes = scale.reshape(-1, 1, x.shape[2] * x.shape[3])
    channel_linear([(planes, alpha)], planes, shift=1.0)
    pointwise("power_scaled", out, x, scale, exponent=np.float32(-beta))


def lrn_within_backward(x, y, scale, dy, size, alpha, beta, dx):
    """dx of ``lrn_within_forward``: through x^-beta directly and through the pooled squares.

    dx must not alias dy.
    """
    pad = (size - 1) // 2
    # d/d(average) of x * (1 + alpha * average)^-beta, into dx as scratch.
    pointwise("ratio_product", dx, dy, y, scale, factor=np.float32(-alpha * beta))
    d_square = np.empty_like(x)
    ave_pool_backward(dx, (size, size), (1, 1), (pad, pad), d_square)
    pointwise("lrn_within_backward", dx, dy, scale, x, d_square, beta=np.float32(beta))


def place_window(x, offsets, out):
    """The window of out starting at ``offsets`` (one per axis) = x; the rest of out is kept
    (Concat's forward and Slice's backward; ``crop_forward`` is the inverse)."""
    window = out[_window(offsets, x.shape)]

    def run(lo, hi):
        window[lo:hi] = x[lo:hi]
    _rows("place_window", x, run)


# ---- losses and accuracy ----
# Scores and probabilities are (outer, classes, inner) arrays (inner 1 for plain
# (batch, classes) ones); labels (int32) and per-prediction weights (float32) are
# (outer, inner), as ``prediction_labels`` makes them.  A unit is one outer index.

def prediction_labels(raw, classes, ignore_label=None, weights=None):
    """(labels, weights, weight sum, first bad label) of a label blob's values ``raw``.

    labels are int32, 0 where ``ignore_label``; weights are float32, 0 there
    and else 1 or ``weights``' value, so their sum is Caffe's valid count when
    unweighted; the first label outside [0, classes) is returned as an int
    (None if all are inside) for the layer's error message.
    """
    flat = raw.reshape(-1)
    labels = np.empty(flat.shape, np.int32)
    out_weights = np.empty(flat.shape, np.float32)
    weighted = weights is not None
    extra = weights.reshape(-1) if weighted else np.empty(1, np.float32)
    has_ignore = ignore_label is not None
    bad, total = _summed(
        "prediction_labels", flat.size, flat.itemsize + weighted * extra.itemsize,
        labels.itemsize + out_weights.itemsize, 1, 2,
        lambda lo, hi: kernels_loss.prediction_labels(
            flat, classes, ignore_label if has_ignore else 0, has_ignore, extra, weighted,
            labels, out_weights, lo, hi))
    first = int(flat[np.argmax(labels < 0)]) if bad else None
    return labels.reshape(raw.shape), out_weights.reshape(raw.shape), total, first


def _summed(kernel_name, count, in_bytes, out_bytes, flops, sums, call):
    """Run a unit kernel returning ``sums`` partial sums per tile; their totals, as floats."""
    partials = []
    scheduler.units(kernel_name, count, in_bytes, out_bytes, flops,
                    lambda lo, hi: partials.append(np.atleast_1d(call(lo, hi))))
    totals = np.sum(partials, axis=0) if partials else np.zeros(sums)
    return tuple(float(total) for total in totals) if sums > 1 else float(totals[0])


def _flat(*arrays):
    """Flat views of C-contiguous arrays, as the loss kernels take them."""
    return [array.reshape(-1) for array in arrays]


def _point_bytes(labels, weights):
    """Bytes of one prediction's label and weight."""
    return labels.itemsize + weights.itemsize


def label_log_loss(prob, labels, weights, threshold):
    """sum of weights * -log(max(prob at the label, threshold)): the multinomial logistic
    loss of SoftmaxWithLoss and MultinomialLogisticLoss, before normalisation."""
    outer, channels, inner = prob.shape
    p, y, w = _flat(prob, labels, weights)
    return _summed("label_log_loss", outer, inner * (prob.itemsize + _point_bytes(y, w)), 0,
                   4 * inner, 1,
                   lambda lo, hi: kernels_loss.label_log_loss(
                       p, y, w, channels, inner, np.float32(threshold), lo, hi))


def label_reciprocal_gradient(prob, labels, weights, threshold, scale, out):
    """out = scale * weights / max(prob, threshold) at the labels, 0 elsewhere
    (MultinomialLogisticLoss's gradient)."""
    outer, channels, inner = prob.shape
    p, y, w, target = _flat(prob, labels, weights, out)
    scheduler.units("label_reciprocal_gradient", outer,
                    inner * (prob.itemsize + _point_bytes(y, w)),
                    channels * inner * out.itemsize, 2 * inner,
                    lambda lo, hi: kernels_loss.label_reciprocal_gradient(
                        p, y, w, channels, inner, np.float32(threshold), np.float32(scale),
                        target, lo, hi))


def hinge_margins(scores, labels, squared, margins):
    """margins = max(0, 1 + d * scores), d = -1 at each row's label and +1 elsewhere, for
    (batch, classes) scores; returns the sum of the margins (of their squares if ``squared``)."""
    num, channels = scores.shape
    x, y, target = _flat(scores, labels, margins)
    row = channels * scores.itemsize
    return _summed("hinge_forward", num, row + y.itemsize, row, 3 * channels, 1,
                   lambda lo, hi: kernels_loss.hinge_forward(x, y, channels, squared, target,
                                                             lo, hi))


def hinge_gradient(margins, labels, squared, scale, out):
    """out = 2 scale * g if ``squared`` else scale * sign(g), g = the margins negated at
    each row's label (HingeLoss's gradient)."""
    num, channels = margins.shape
    m, y, target = _flat(margins, labels, out)
    row = channels * margins.itemsize
    scheduler.units("hinge_backward", num, row + y.itemsize, row, 2 * channels,
                    lambda lo, hi: kernels_loss.hinge_backward(
                        m, y, channels, squared, np.float32(scale), target, lo, hi))


def _infogain_bytes(prob, labels, weights):
    """Per unit and prediction: its probabilities, its label's gain-matrix row, its label
    and weight."""
    _, channels, inner = prob.shape
    return inner * (2 * channels * prob.itemsize + _point_bytes(labels, weights))


def infogain_loss(prob, labels, weights, matrix, threshold):
    """sum of weights * -sum_c H[label, c] log(max(prob_c, threshold)), H the (classes,
    classes) gain matrix: InfogainLoss before normalisation."""
    outer, channels, inner = prob.shape
    p, y, w = _flat(prob, labels, weights)
    gains = np.ascontiguousarray(matrix, np.float32).reshape(-1)
    return _summed("infogain_forward", outer, _infogain_bytes(prob, y, w), 0,
                   6 * channels * inner, 1,
                   lambda lo, hi: kernels_loss.infogain_forward(
                       p, y, w, gains, channels, inner, np.float32(threshold), lo, hi))


def infogain_gradient(prob, labels, weights, matrix, scale, out):
    """out = scale * weights * (prob * sum_l H[label, l] - H[label, :]) (InfogainLoss's
    gradient with respect to the scores under the softmax)."""
    outer, channels, inner = prob.shape
    p, y, w, target = _flat(prob, labels, weights, out)
    gains = np.ascontiguousarray(matrix, np.float32).reshape(-1)
    scheduler.units("infogain_backward", outer, _infogain_bytes(prob, y, w),
                    channels * inner * out.itemsize, 4 * channels * inner,
                    lambda lo, hi: kernels_loss.infogain_backward(
                        p, y, w, gains, channels, inner, np.float32(scale), target, lo, hi))


def contrastive_loss(difference, similarity, margin, legacy, dist_sq):
    """dist_sq (float64) = each pair's squared distance from ``difference`` (pairs, dim);
    returns ContrastiveLoss's sum (d^2 for similar pairs, max(margin - d, 0)^2, legacy
    max(margin - d^2, 0), for the others) before dividing by 2N."""
    num, dim = difference.shape
    d, s = _flat(difference, similarity)
    return _summed("contrastive_forward", num, dim * d.itemsize + s.itemsize, dist_sq.itemsize,
                   2 * dim + 4, 1,
                   lambda lo, hi: kernels_loss.contrastive_forward(
                       d, s, dim, float(margin), legacy, dist_sq, lo, hi))


def contrastive_gradient(difference, similarity, dist_sq, margin, legacy, alpha, out):
    """ContrastiveLoss's gradient, ``alpha`` = sign * loss weight / N (Caffe's, including
    the 1e-4 added to d for dissimilar pairs)."""
    num, dim = difference.shape
    d, s, target = _flat(difference, similarity, out)
    scheduler.units("contrastive_backward", num, dim * d.itemsize + s.itemsize + dist_sq.itemsize,
                    dim * out.itemsize, dim + 6,
                    lambda lo, hi: kernels_loss.contrastive_backward(
                        d, s, dist_sq, dim, float(margin), legacy, float(alpha), target, lo, hi))


def soft_target_loss(primary, aux, labels, weights, temperature, weighted_soft):
    """(sum_i w_i * -log softmax(z_p)_i[y_i], sum_i s_i * KL(softmax(z_a/T)_i ||
    softmax(z_p/T)_i)) over (batch, classes) scores, s = w if ``weighted_soft`` else 1;
    in float64 (SoftTargetLoss before weighting and normalising)."""
    num, channels = primary.shape
    zp, za, y, w = _flat(primary, aux, labels, weights)
    return _summed("soft_target_forward", num, 2 * channels * zp.itemsize + _point_bytes(y, w),
                   0, 20 * channels, 2,
                   lambda lo, hi: kernels_loss.soft_target_forward(
                       zp, za, y, w, channels, float(temperature), weighted_soft, lo, hi))


def soft_target_gradient(primary, aux, labels, weights, temperature, weighted_soft,
                         hard_scale, soft_scale, out):
    """out = hard_scale * w * (softmax(z_p) - onehot(y)) + soft_scale * s * (softmax(z_p/T)
    - softmax(z_a/T)), s as in ``soft_target_loss``."""
    num, channels = primary.shape
    zp, za, y, w, target = _flat(primary, aux, labels, weights, out)
    scheduler.units("soft_target_backward", num,
                    2 * channels * zp.itemsize + _point_bytes(y, w), channels * out.itemsize,
                    20 * channels,
                    lambda lo, hi: kernels_loss.soft_target_backward(
                        zp, za, y, w, channels, float(temperature), weighted_soft,
                        float(hard_scale), float(soft_scale), target, lo, hi))


def label_confidence(probs_a, probs_p, labels):
    """Per sample, the mean of two models' (batch, classes) probabilities of its label,
    as float64: MCT's confidence."""
    num, channels = probs_a.shape
    pa, pp, y = _flat(probs_a, probs_p, labels)
    out = np.empty(num, np.float64)
    scheduler.units("label_confidence", num, 2 * pa.itemsize + y.itemsize, out.itemsize, 2,
                    lambda lo, hi: kernels_loss.label_confidence(pa, pp, y, channels, out,
                                                                 lo, hi))
    return out


def accuracy_counts(scores, labels, weights, top_k):
    """Per class: (predictions with weight != 0, those whose label is among the ``top_k``
    scores by Caffe's rule, where a tie with the true class counts as a miss), as int64."""
    outer, channels, inner = scores.shape
    x, y, w = _flat(scores, labels, weights)
    totals = np.zeros(channels, np.int64)
    rights = np.zeros(channels, np.int64)

    def run(lo, hi):
        parts = kernels_loss.count_parts(hi - lo)
        part_totals = np.zeros((parts, channels), np.int64)
        part_rights = np.zeros((parts, channels), np.int64)
        kernels_loss.accuracy_counts(x, y, w, channels, inner, top_k, part_totals, part_rights,
                                     lo, hi)
        totals[...] += part_totals.sum(axis=0)
        rights[...] += part_rights.sum(axis=0)
    scheduler.units("accuracy", outer, inner * (channels * x.itemsize + _point_bytes(y, w)), 0,
                    channels * inner, run)
    return totals, rights


# ---- ranking and copies ----


def top_k(x, k, write_indices, write_values, out):
    """ArgMax's ranking: the ``k`` largest of each column x[o, :, j] of x (outer, length,
    inner), by Caffe's rule (equal values: the higher index first), into out (outer,
    parts, k, inner): the indices as floats if ``write_indices``, then the values if
    ``write_values`` (parts counts the two flags)."""
    outer, length, inner = x.shape
    x_flat, out_flat = x.reshape(-1), out.reshape(-1)
    parts = write_indices + write_values
    # Unit: one column; per value, a comparison per rank it passes (insertion) or a
    # sort's log2(length).
    insertion = k <= kernels_rank.INSERTION_TOP_K
    scheduler.units("top_k", outer * inner, length * x.itemsize, parts * k * out.itemsize,
                    length * (k if insertion else max(1, int(np.log2(length)))),
                    lambda lo, hi: kernels_rank.top_k(x_flat, length, inner, k, write_indices,
                                                      write_values, out_flat, lo, hi))


def fill(out, value):
    """out = value everywhere (e.g. the zero gradient Silence hands back)."""
    constant = np.float32(value)
    scheduler.elementwise("fill", 0, lambda out: out.fill(constant), out)


_FORMULAS.update({
    # Dropout's mask from uniform draws: scale where the draw is >= the ratio, else 0.
    "dropout_mask": (2, lambda draws, out, ratio, scale: np.multiply(
        draws >= ratio, scale, out=out)),
})
