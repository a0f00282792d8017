"""Plain-numpy float64 forward references of layers, written from Caffe's formulas.

Independent of pycaffe_mct's kernels: straightforward loops and broadcasting,
used by the layer tests and by the whole-net reference executor
(reference_nets.py).  Each function takes and returns float64 arrays.
"""
import math

import numpy as np


def conv(x, w, b, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (oh - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (ow - 1) + 1, stride[1])
                patch = xs[:, :, rows, cols]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch,
                                                         w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def deconv(x, w, b, stride=(1, 1), pad=(0, 0), group=1):
    """Transposed convolution by scattering each input pixel's kernel-weighted copy."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    oh = stride[0] * (h - 1) + kh - 2 * pad[0]
    ow = stride[1] * (wd - 1) + kw - 2 * pad[1]
    full = np.zeros((n, og * group, stride[0] * (h - 1) + kh, stride[1] * (wd - 1) + kw))
    cg = c // group
    for g in range(group):
        for y in range(h):
            for xx in range(wd):
                contrib = np.einsum("nc,cokl->nokl", x[:, g * cg:(g + 1) * cg, y, xx],
                                    w[g * cg:(g + 1) * cg])
                full[:, g * og:(g + 1) * og, y * stride[0]:y * stride[0] + kh,
                     xx * stride[1]:xx * stride[1] + kw] += contrib
    out = full[:, :, pad[0]:pad[0] + oh, pad[1]:pad[1] + ow]
    return out + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def _pool_extent(size, kernel, pad, stride, padded):
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if padded and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pool(x, method, kernel, stride=(1, 1), pad=(0, 0)):
    """Caffe pooling: ceil-rounded output; AVE divides by the window clipped to the padding."""
    n, c, h, w = x.shape
    padded = bool(pad[0] or pad[1])
    oh = _pool_extent(h, kernel[0], pad[0], stride[0], padded)
    ow = _pool_extent(w, kernel[1], pad[1], stride[1], padded)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
            y1, x1 = min(y0 + kernel[0], h + pad[0]), min(x0 + kernel[1], w + pad[1])
            window = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if method == "MAX":
                out[:, :, i, j] = window.max(axis=(2, 3))
            else:
                out[:, :, i, j] = window.sum(axis=(2, 3)) / ((y1 - y0) * (x1 - x0))
    return out


def lrn_across(x, size, alpha, beta, k):
    n, c, h, w = x.shape
    pre = (size - 1) // 2
    square = np.pad(x * x, ((0, 0), (pre, size - 1 - pre), (0, 0), (0, 0)))
    window = sum(square[:, i:i + c] for i in range(size))
    return x * (k + alpha / size * window) ** -beta


def lrn_within(x, size, alpha, beta):
    pre = (size - 1) // 2
    average = pool(x * x, "AVE", (size, size), (1, 1), (pre, pre))
    return x * (1 + alpha * average) ** -beta


def batch_norm(x, mean, var, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)


def batch_statistics(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes)


def broadcast(operand, x_shape, axis):
    """Shape operand to broadcast against x from ``axis`` on."""
    trailing = len(x_shape) - axis - operand.ndim
    return operand.reshape((1,) * axis + operand.shape + (1,) * trailing)


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def inner_product(x, w, b, axis=1):
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    out = flat @ w.T
    return out + b if b is not None else out
