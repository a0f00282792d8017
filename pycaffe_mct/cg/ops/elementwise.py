"""Element-wise ops: activations, the named formulas of the activation and loss
layers, weighted sums, products, maxima, copies, dot products.

Most run through ``scheduler.elementwise`` (units are elements; a tile sees
flat slices); ReLU and the weighted sum have numba kernels, which vectorise
thanks to unsigned offsets (see ``..jit``).
"""
import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def relu_forward(x, negative_slope, out):
    slope = np.float32(negative_slope)
    scheduler.elementwise("relu_forward", 2 if negative_slope else 1, lambda x, out:
                          relu_forward_kernel(x.reshape(-1), slope, out.reshape(-1)), out, x)


def relu_backward(x, dy, negative_slope, dx):
    """x is the forward input (or output: their signs agree); dx may alias dy."""
    slope = np.float32(negative_slope)
    scheduler.elementwise("relu_backward", 2, lambda x, dy, dx: relu_backward_kernel(
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
    # WITHIN_CHANNEL LRN: y = x * scale^-beta, its gradient through the pooled squares.
    "power_scaled": (7, lambda x, base, out, exponent: np.multiply(x, base ** exponent,
                                                                   out=out)),
    "ratio_product": (3, lambda a, b, c, out, factor: np.multiply(a * b / c, factor, out=out)),
    "lrn_within_backward": (10, lambda dy, scale, x, d_square, out, beta: np.add(
        dy * scale ** -beta, 2 * x * d_square, out=out)),
    # Dropout's mask from uniform draws: scale where the draw is >= the ratio, else 0.
    "dropout_mask": (2, lambda draws, out, ratio, scale: np.multiply(
        draws >= ratio, scale, out=out)),
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


def sum_relu_into(arrays, out, coeffs, negative_slope):
    """out = ReLU(sum_i coeffs[i] * arrays[i]): an Eltwise SUM and the in-place ReLU after it
    in one pass (``fusion.SumReLUChain``), rounded as the two layers round it."""
    _weighted_sum("sum_relu", arrays, out, coeffs, negative_slope)


def _weighted_sum(kernel_name, arrays, out, coeffs, relu_slope=None):
    """out = sum_i coeffs[i] * arrays[i] in float32, in order, in one numba pass, then
    through a ReLU of that slope unless ``relu_slope`` is None."""
    factors = np.asarray(coeffs, np.float32)
    relu, slope = relu_slope is not None, np.float32(relu_slope or 0.0)

    def weighted_sum(*args):
        *inputs, target = args
        flats = tuple(np.ascontiguousarray(x, np.float32).reshape(-1) for x in inputs)
        weighted_sum_kernel(flats, factors, relu, slope, target.reshape(-1))
    scheduler.elementwise(kernel_name, 2 * len(arrays) - 1 + relu, weighted_sum, out, *arrays)


def relu_backward_copies(y, sources, negative_slope, dx, copies):
    """dx = (the sum of ``sources``, added in order) * ReLU's gradient at its output y, and
    out = coeff * dx for each (coeff, out) of ``copies``: a Split's backward (the sum), the
    in-place ReLU's before it and the Eltwise SUM's before that (``fusion.SumReLUChain``) in
    one pass, rounded as the layers round them.  Without a Split, ``sources`` is (dx,)."""
    slope = np.float32(negative_slope)
    factors = np.asarray([coeff for coeff, _ in copies] or [0.0], np.float32)
    outs = tuple(out.reshape(-1) for _, out in copies) or (np.empty(0, np.float32),)
    grads = tuple(source.reshape(-1) for source in sources)
    count = len(copies)
    flat_y, flat_dx = y.reshape(-1), dx.reshape(-1)
    scheduler.units("relu_backward_copies", y.size, (1 + len(grads)) * y.itemsize,
                    (1 + count) * y.itemsize, 1 + len(grads) + count,
                    lambda lo, hi: relu_backward_copies_kernel(flat_y, grads, slope, flat_dx,
                                                               factors, outs, count, lo, hi))


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


def fill(out, value):
    """out = value everywhere (the zero gradient Silence hands back, the parameter gradients
    a solver clears every iteration), large arrays split over the host threads: clearing
    AlexNet's fc6 gradient (151 MB) took 18.6 ms on one thread, 9.4 on two."""
    constant = np.float32(value)
    flat = out.reshape(-1)
    scheduler.units("fill", flat.size, 0, flat.itemsize, 0,
                    lambda lo, hi: flat[lo:hi].fill(constant), spread=True)


_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@numba.njit(inline="always", **JIT)
def relu_value(value, slope):
    """Caffe's ReLU of one float32: max(x, 0) + slope * min(x, 0) (slope a float32)."""
    return (_ZERO if value < 0 else value) + slope * (_ZERO if 0 < value else value)


@numba.njit(inline="always", **JIT)
def relu_gradient(value, slope):
    """Caffe's ReLU derivative at x (or at the output: their signs agree):
    (x > 0) + slope * (x <= 0)."""
    return (_ONE if value > 0 else _ZERO) + slope * (_ONE if value <= 0 else _ZERO)


@numba.njit(parallel=True, **JIT)
def relu_forward_kernel(x, slope, out):
    """``relu_value`` on flat arrays."""
    for i in numba.prange(U(x.size)):
        out[i] = relu_value(x[i], slope)


@numba.njit(parallel=True, **JIT)
def relu_backward_kernel(x, dy, slope, dx):
    """dx = dy * ``relu_gradient`` on flat arrays; dx may be dy."""
    for i in numba.prange(U(x.size)):
        dx[i] = dy[i] * relu_gradient(x[i], slope)


# Element-wise kernels of several terms work on blocks this long: each term's pass over a
# block is one vectorised loop, and the block stays in the L1 cache between passes.
_TERMS_BLOCK = 4096


@numba.njit(parallel=True, **JIT)
def weighted_sum_kernel(arrays, coeffs, relu, slope, out):
    """out = sum_t coeffs[t] * arrays[t] on flat arrays, the terms added in order in float32
    (numpy's ``out = a0*c0; out += a1*c1`` to the bit, in one pass over memory), then
    ``relu_value`` of it if ``relu``, while the block is still in the L1 cache."""
    size = out.size
    for block in numba.prange((size + _TERMS_BLOCK - 1) // _TERMS_BLOCK):
        start = U(block * _TERMS_BLOCK)
        count = U(min(size - block * _TERMS_BLOCK, _TERMS_BLOCK))
        first, coeff = arrays[0], coeffs[0]
        for i in range(count):
            out[start + i] = first[start + i] * coeff
        for term in range(1, len(arrays)):
            array, coeff = arrays[term], coeffs[term]
            for i in range(count):
                out[start + i] += array[start + i] * coeff
        if relu:
            for i in range(count):
                out[start + i] = relu_value(out[start + i], slope)


@numba.njit(parallel=True, **JIT)
def relu_backward_copies_kernel(y, sources, slope, dx, coeffs, outs, count, lo, hi):
    """Elements lo..hi: see ``relu_backward_copies`` (``count`` of ``outs`` are real)."""
    first = U(lo)
    for block in numba.prange((hi - lo + _TERMS_BLOCK - 1) // _TERMS_BLOCK):
        start = first + U(block * _TERMS_BLOCK)
        length = U(min(hi - lo - block * _TERMS_BLOCK, _TERMS_BLOCK))
        grad = sources[0]
        for i in range(length):
            dx[start + i] = grad[start + i]
        for source in range(1, len(sources)):
            grad = sources[source]
            for i in range(length):
                dx[start + i] += grad[start + i]
        for i in range(length):
            dx[start + i] = dx[start + i] * relu_gradient(y[start + i], slope)
        for copy in range(count):
            out, coeff = outs[copy], coeffs[copy]
            for i in range(length):
                out[start + i] = dx[start + i] * coeff
