"""The narrow interface between layers and the core-group back end.

Layers call these named operations with whole arrays and know nothing about
tiles, CPEs or numba.  Each operation is where the core-group scheduler plans
the work (tiles that fit the local stores, their assignment to the 8x8 mesh)
and launches the kernels; swapping that plan never changes a layer.

Conventions: arrays are float32 and C-contiguous; ``out`` arguments are
written, never accumulated into, unless the name says ``accumulate``.
"""
import numpy as np

from . import kernels


def conv_out_size(size, kernel, pad, stride, dilation):
    """Caffe's convolution output size (floor rounding)."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``out = alpha * op(a) @ op(b) + beta * out`` (BLAS sgemm semantics)."""
    left = a.T if trans_a else a
    right = b.T if trans_b else b
    if out is None:
        product = left @ right
        return product * alpha if alpha != 1.0 else product
    if beta == 0.0 and alpha == 1.0:
        np.matmul(left, right, out=out)
    else:
        product = left @ right
        if beta == 0.0:
            np.multiply(product, alpha, out=out)
        else:
            out *= beta
            out += alpha * product if alpha != 1.0 else product
    return out


def im2col(x, kernel, pad, stride, dilation, cols):
    """Unfold x (N, C, H, W) into cols (C*kh*kw, N*out_h*out_w)."""
    out_h = conv_out_size(x.shape[2], kernel[0], pad[0], stride[0], dilation[0])
    out_w = conv_out_size(x.shape[3], kernel[1], pad[1], stride[1], dilation[1])
    kernels.im2col(x, kernel[0], kernel[1], pad[0], pad[1], stride[0], stride[1],
                   dilation[0], dilation[1], out_h, out_w, cols)
    return cols


def col2im(cols, kernel, pad, stride, dilation, dx):
    """Fold cols back into dx (N, C, H, W), summing overlaps; dx is overwritten."""
    out_h = conv_out_size(dx.shape[2], kernel[0], pad[0], stride[0], dilation[0])
    out_w = conv_out_size(dx.shape[3], kernel[1], pad[1], stride[1], dilation[1])
    kernels.col2im(cols, kernel[0], kernel[1], pad[0], pad[1], stride[0], stride[1],
                   dilation[0], dilation[1], out_h, out_w, dx)
    return dx


def max_pool_forward(x, kernel, stride, pad, out, argmax):
    kernels.max_pool_forward(x, kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1],
                             out, argmax)


def max_pool_backward(dy, argmax, dx):
    kernels.max_pool_backward(dy, argmax, dx)


def ave_pool_forward(x, kernel, stride, pad, out):
    kernels.ave_pool_forward(x, kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1],
                             out)


def ave_pool_backward(dy, kernel, stride, pad, dx):
    kernels.ave_pool_backward(dy, kernel[0], kernel[1], stride[0], stride[1], pad[0], pad[1],
                              dx)


def softmax_forward(x, out):
    """Softmax over axis 1 of (outer, channels, inner) arrays."""
    kernels.softmax_forward(x, out)


def softmax_backward(y, dy, dx):
    kernels.softmax_backward(y, dy, dx)


def relu_forward(x, negative_slope, out):
    if negative_slope:
        np.multiply(x, np.where(x > 0, np.float32(1), np.float32(negative_slope)), out=out)
    else:
        np.maximum(x, 0, out=out)


def relu_backward(x, dy, negative_slope, dx):
    """x is the forward input (or output: their signs agree); dx may alias dy."""
    np.multiply(dy, np.where(x > 0, np.float32(1), np.float32(negative_slope)), out=dx)


def sigmoid_forward(x, out):
    # 0.5 * tanh(0.5 x) + 0.5 is the overflow-free form of 1 / (1 + exp(-x)).
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5


def sigmoid_backward(y, dy, dx):
    np.multiply(dy, y * (1 - y), out=dx)


def tanh_forward(x, out):
    np.tanh(x, out=out)


def tanh_backward(y, dy, dx):
    np.multiply(dy, 1 - y * y, out=dx)


def scale_into(x, factor, out):
    """out = x * factor, with factor a scalar or a broadcastable array."""
    np.multiply(x, factor, out=out)


def sum_into(arrays, out, coeffs=None):
    """out = sum_i coeffs[i] * arrays[i]."""
    coeffs = coeffs or [1.0] * len(arrays)
    np.multiply(arrays[0], coeffs[0], out=out)
    for array, coeff in zip(arrays[1:], coeffs[1:]):
        if coeff == 1.0:
            out += array
        else:
            out += coeff * array
