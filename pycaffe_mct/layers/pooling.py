"""Pooling (MAX, AVE) with Caffe's output-size rule: round up, then drop a
last window that would start inside the padding."""
import math

import numpy as np

from ..cg import ops
from ..layer import Layer, register_layer
from ..proto import caffe_pb2

_POOL = caffe_pb2.PoolingParameter


def pooled_size(size, kernel, pad, stride, padded):
    """Caffe's pooled extent: ceil rounding, minus a window starting in the padding.

    ``padded`` is whether either spatial pad is non-zero: Caffe applies the
    correction to both axes as soon as one of them is padded.
    """
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if padded and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


@register_layer("Pooling")
class PoolingLayer(Layer):
    exact_bottoms = 1
    min_tops = 1
    max_tops = 2

    def layer_setup(self, bottom, top):
        p = self.param.pooling_param
        if p.pool not in (_POOL.MAX, _POOL.AVE):
            raise self.error(f"pool method {_POOL.PoolMethod.Name(p.pool)} is not supported "
                             f"(MAX and AVE are)")
        if len(top) == 2 and p.pool != _POOL.MAX:
            raise self.error("only MAX pooling can output a mask top")
        self.global_pooling = p.global_pooling
        if self.global_pooling:
            if p.HasField("kernel_size") or p.HasField("kernel_h"):
                raise self.error("global_pooling takes no kernel size")
        elif p.HasField("kernel_size") and (p.HasField("kernel_h") or p.HasField("kernel_w")):
            raise self.error("give kernel_size or kernel_h and kernel_w, not both")
        elif p.HasField("kernel_h") != p.HasField("kernel_w"):
            raise self.error("give both kernel_h and kernel_w")
        elif not (p.HasField("kernel_size") or p.HasField("kernel_h")):
            raise self.error("kernel_size (or kernel_h and kernel_w) is required")
        self.pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
        self.stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
        if not self.global_pooling:
            self.kernel = ((p.kernel_h, p.kernel_w) if p.HasField("kernel_h")
                           else (p.kernel_size, p.kernel_size))
            if min(self.kernel) <= 0:
                raise self.error(f"kernel size {self.kernel} must be positive")
        if min(self.stride) <= 0:
            raise self.error(f"stride {self.stride} must be positive")
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise self.error("global_pooling needs pad 0 and stride 1")
        if not self.global_pooling and (self.pad[0] >= self.kernel[0]
                                        or self.pad[1] >= self.kernel[1]):
            raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.method = p.pool

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-axis (N, C, H, W) bottom, got {shape}")
        if self.global_pooling:
            self.kernel = (shape[2], shape[3])
        if (self.kernel[0] > shape[2] + 2 * self.pad[0]
                or self.kernel[1] > shape[3] + 2 * self.pad[1]):
            raise self.error(f"kernel {self.kernel} is larger than the padded input "
                             f"{shape[2]}x{shape[3]} (pad {self.pad})")
        out_h = pooled_size(shape[2], self.kernel[0], self.pad[0], self.stride[0], any(self.pad))
        out_w = pooled_size(shape[3], self.kernel[1], self.pad[1], self.stride[1], any(self.pad))
        for blob in top:
            blob.reshape(shape[0], shape[1], out_h, out_w)
        if self.method == _POOL.MAX and getattr(self, "argmax", None) is None \
                or self.method == _POOL.MAX and self.argmax.shape != top[0].shape:
            self.argmax = np.empty(top[0].shape, dtype=np.int32)

    def forward_cpu(self, bottom, top):
        if self.method == _POOL.MAX:
            ops.max_pool_forward(bottom[0].data, self.kernel, self.stride, self.pad,
                                 top[0].data, self.argmax)
            if len(top) == 2:
                ops.copy_into(self.argmax, top[1].data)
        else:
            ops.ave_pool_forward(bottom[0].data, self.kernel, self.stride, self.pad,
                                 top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.method == _POOL.MAX:
            ops.max_pool_backward(top[0].diff, self.argmax, bottom[0].diff)
        else:
            ops.ave_pool_backward(top[0].diff, self.kernel, self.stride, self.pad,
                                  bottom[0].diff)
