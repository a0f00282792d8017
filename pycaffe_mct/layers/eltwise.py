"""Element-wise combinations and reductions: Eltwise, Reduction, ArgMax."""
import numpy as np

from ..cg import ops
from ..layer import Layer, register_layer
from ..proto import caffe_pb2
from .scale import layer_axis

_ELTWISE = caffe_pb2.EltwiseParameter
_REDUCTION = caffe_pb2.ReductionParameter


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    """PROD, SUM (with per-bottom coeff) or MAX of equally shaped bottoms."""
    min_bottoms = 2
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.eltwise_param
        self.operation = p.operation
        if p.coeff and self.operation != _ELTWISE.SUM:
            raise self.error("coeff is only allowed with operation SUM")
        if p.coeff and len(p.coeff) != len(bottom):
            raise self.error(f"coeff has {len(p.coeff)} values for {len(bottom)} bottoms")
        self.coeffs = list(p.coeff) or [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad
        self.argmax = None

    def reshape(self, bottom, top):
        first = bottom[0].shape
        for index, blob in enumerate(bottom[1:], 1):
            if blob.shape != first:
                raise self.error(f"bottom {index} has shape {blob.shape} but bottom 0 has "
                                 f"{first}; Eltwise needs equal shapes")
        top[0].reshape(first)

    def forward_cpu(self, bottom, top):
        arrays = [blob.data for blob in bottom]
        out = top[0].data
        if self.operation == _ELTWISE.SUM:
            ops.sum_into(arrays, out, self.coeffs)
        elif self.operation == _ELTWISE.PROD:
            ops.product_into(arrays, out)
        else:
            if self.argmax is None or self.argmax.shape != out.shape:
                self.argmax = np.empty(out.shape, np.int32)
            ops.max_into(arrays, out, self.argmax)

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].diff
        for index, blob in enumerate(bottom):
            if not propagate_down[index]:
                continue
            if self.operation == _ELTWISE.SUM:
                if not blob.shares_diff_with(top[0]):      # see diff_sharing.py
                    ops.scale_into(dy, np.float32(self.coeffs[index]), blob.diff)
            elif self.operation == _ELTWISE.MAX:
                ops.select_into(dy, self.argmax, index, blob.diff)
            elif self.stable_prod_grad:
                others = [other.data for other_index, other in enumerate(bottom)
                          if other_index != index]
                ops.product_into([dy] + others, blob.diff)
            else:
                ops.product_into([dy, top[0].data], blob.diff, divisor=blob.data)


@register_layer("Reduction")
class ReductionLayer(Layer):
    """SUM, ASUM, SUMSQ or MEAN over all axes from ``axis`` on, times coeff."""
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.reduction_param
        self.operation_name = _REDUCTION.ReductionOp.Name(p.operation).lower()
        self.coeff = p.coeff
        self.axis = layer_axis(self, bottom[0], p.axis)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape[:self.axis])
        self.view = (bottom[0].count_axes(0, self.axis), bottom[0].count_axes(self.axis))

    def forward_cpu(self, bottom, top):
        ops.row_reduce(bottom[0].data.reshape(self.view), self.operation_name, self.coeff,
                       top[0].data.reshape(-1))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.row_reduce_backward(bottom[0].data.reshape(self.view), top[0].diff.reshape(-1),
                                    self.operation_name, self.coeff,
                                    bottom[0].diff.reshape(self.view))


@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    """Indices (and with out_max_val, values) of the top_k largest entries.

    Without ``axis`` each sample is flattened and the top is (N, 1 or 2, top_k);
    with ``axis`` that axis becomes top_k long and holds indices, or values when
    out_max_val.  Equal values rank the higher index first, as in Caffe.  It has
    no gradient.
    """
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, p.top_k
        self.axis = layer_axis(self, bottom[0], p.axis) if p.HasField("axis") else None
        if self.top_k < 1:
            raise self.error("top_k must be at least 1")
        length = bottom[0].count_axes(1) if self.axis is None else bottom[0].shape[self.axis]
        if self.top_k > length:
            raise self.error(f"top_k {self.top_k} exceeds the {length} values it ranks in "
                             f"bottom shape {bottom[0].shape}")

    def reshape(self, bottom, top):
        if self.axis is not None:
            shape = list(bottom[0].shape)
            shape[self.axis] = self.top_k
        else:
            shape = [1] * max(bottom[0].num_axes, 3)
            shape[0], shape[1], shape[2] = bottom[0].shape[0], 2 if self.out_max_val else 1, \
                self.top_k
        top[0].reshape(shape)

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        if self.axis is None:
            # Each sample flattened; the top holds its indices, then its values.
            ops.top_k(x.reshape(x.shape[0], -1, 1), self.top_k, True, self.out_max_val,
                      top[0].data)
        else:
            ranked = (bottom[0].count_axes(0, self.axis), x.shape[self.axis],
                      bottom[0].count_axes(self.axis + 1))
            ops.top_k(x.reshape(ranked), self.top_k, not self.out_max_val, self.out_max_val,
                      top[0].data)

    def allow_force_backward(self, bottom_index):
        return False

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("has no gradient (Caffe's ArgMax backward is not implemented)")
