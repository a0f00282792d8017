"""InnerProduct: y = x W^T + b over the axes from ``axis`` on, as one GEMM."""
from ..cg import ops
from ..fillers import weight_and_bias
from ..layer import Layer, register_layer


@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.inner_product_param
        if p.num_output <= 0:
            raise self.error("num_output must be positive")
        self.num_output = p.num_output
        self.axis = bottom[0].canonical_axis(p.axis)
        self.inputs = bottom[0].count_axes(self.axis)
        self.transpose = p.transpose
        self.bias_term = p.bias_term
        shape = (self.inputs, self.num_output) if self.transpose else (self.num_output, self.inputs)
        self.blobs = weight_and_bias(shape, p.weight_filler,
                                     self.num_output if self.bias_term else 0, p.bias_filler)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if bottom[0].count_axes(self.axis) != self.inputs:
            raise self.error(f"bottom shape {shape} gives {bottom[0].count_axes(self.axis)} "
                             f"inputs per sample from axis {self.axis}; the weights expect "
                             f"{self.inputs}")
        top[0].reshape(shape[:self.axis] + (self.num_output,))

    def _matrices(self, bottom, top, diff=False):
        rows = bottom[0].count_axes(0, self.axis)
        x = bottom[0].data.reshape(rows, self.inputs)
        y = (top[0].diff if diff else top[0].data).reshape(rows, self.num_output)
        return x, y

    def forward_cpu(self, bottom, top):
        x, y = self._matrices(bottom, top)
        ops.gemm(x, self.blobs[0].data, trans_b=not self.transpose, out=y)
        if self.bias_term:
            ops.add_channel_bias(y.reshape(y.shape[0], -1, 1), self.blobs[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        x, dy = self._matrices(bottom, top, diff=True)
        if self.param_propagate_down[0]:
            if self.transpose:
                ops.gemm(x, dy, trans_a=True, beta=1.0, out=self.blobs[0].diff)
            else:
                ops.gemm(dy, x, trans_a=True, beta=1.0, out=self.blobs[0].diff)
        if self.bias_term and self.param_propagate_down[1]:
            ops.accumulate_channel_bias_grad(dy.reshape(dy.shape[0], -1, 1), self.blobs[1].diff)
        if propagate_down[0]:
            dx = bottom[0].diff.reshape(x.shape)
            ops.gemm(dy, self.blobs[0].data, trans_b=self.transpose, out=dx)
