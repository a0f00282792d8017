"""Convolution: Caffe's layer (parameters, shapes, checks) over the core group's convolution.

Weights are (num_output, channels/group, kh, kw) as in Caffe.  The work is
``ops.convolve`` (im2col then GEMM, in chunks of images) and, for the
gradients, ``ops.convolve_transpose``; see ``cg/ops/convolution.py``.
"""

from ..cg import ops
from ..fillers import weight_and_bias
from ..layer import Layer, register_layer


def spatial_pairs(layer, p):
    """(kernel, pad, stride, dilation) as (h, w) pairs from a ConvolutionParameter."""
    def pair(repeated, h_field, w_field, default, name):
        if h_field and (p.HasField(h_field) or p.HasField(w_field)):
            if repeated:
                raise layer.error(f"give either {name} or {h_field}/{w_field}, not both")
            return (getattr(p, h_field), getattr(p, w_field))
        values = list(repeated) or [default]
        if len(values) == 1:
            return (values[0], values[0])
        if len(values) == 2:
            return tuple(values)
        raise layer.error(f"{name} has {len(values)} values; only 2-D convolution is supported")
    kernel = pair(p.kernel_size, "kernel_h", "kernel_w", None, "kernel_size")
    if kernel[0] is None:
        raise layer.error("kernel_size (or kernel_h and kernel_w) is required")
    pad = pair(p.pad, "pad_h", "pad_w", 0, "pad")
    stride = pair(p.stride, "stride_h", "stride_w", 1, "stride")
    dilation = pair(p.dilation, None, None, 1, "dilation")
    if min(kernel) <= 0:
        raise layer.error(f"kernel size {kernel} must be positive")
    if min(stride) <= 0:
        raise layer.error(f"stride {stride} must be positive")
    if min(dilation) <= 0:
        raise layer.error(f"dilation {dilation} must be positive")
    if min(pad) < 0:
        raise layer.error(f"pad {pad} must not be negative")
    return kernel, pad, stride, dilation


@register_layer("Convolution")
class ConvolutionLayer(Layer):
    min_bottoms = 1
    equal_bottom_top = True

    def layer_setup(self, bottom, top):
        p = self.param.convolution_param
        self.kernel, self.pad, self.stride, self.dilation = spatial_pairs(self, p)
        if p.axis not in (1, -3) or bottom[0].num_axes != 4:
            raise self.error(f"needs a 4-axis (N, C, H, W) bottom with axis 1, got shape "
                             f"{bottom[0].shape}, axis {p.axis}")
        self.num_output, self.group = p.num_output, p.group
        channels = bottom[0].shape[1]
        if self.num_output <= 0:
            raise self.error("num_output must be positive")
        if self.group <= 0 or channels % self.group or self.num_output % self.group:
            raise self.error(f"group {self.group} must divide both the {channels} input "
                             f"channels and num_output {self.num_output}")
        self.channels = channels
        self.bias_term = p.bias_term
        self.blobs = weight_and_bias(self.weight_shape(), p.weight_filler,
                                     self.num_output if self.bias_term else 0, p.bias_filler)

    def weight_shape(self):
        return (self.num_output, self.channels // self.group) + tuple(self.kernel)

    def output_hw(self, height, width):
        return self.window().output_hw(height, width)

    def reshape(self, bottom, top):
        first = bottom[0].shape
        for index, blob in enumerate(bottom):
            if blob.shape != first:
                raise self.error(f"bottom {index} has shape {blob.shape}, bottom 0 {first}; "
                                 f"all bottoms must agree")
        if first[1] != self.channels:
            raise self.error(f"bottom has {first[1]} channels, the weights expect "
                             f"{self.channels}")
        out_h, out_w = self.output_hw(first[2], first[3])
        if out_h <= 0 or out_w <= 0:
            raise self.error(f"kernel {self.kernel} (dilation {self.dilation}) is larger than "
                             f"the padded input {first[2]}x{first[3]} (pad {self.pad})")
        for blob in top:
            blob.reshape(first[0], self.num_output, out_h, out_w)

    def window(self):
        return ops.Window(self.kernel, self.pad, self.stride, self.dilation, self.group)

    def forward_cpu(self, bottom, top):
        for x_blob, y_blob in zip(bottom, top):
            self._forward_data(x_blob.data, y_blob.data)
            if self.bias_term:
                y = y_blob.data
                ops.add_channel_bias(y.reshape(y.shape[0], self.num_output, -1),
                                     self.blobs[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        want_weight = self.param_propagate_down[0]
        for y_blob, x_blob, want_bottom in zip(top, bottom, propagate_down):
            dy = y_blob.diff
            if self.bias_term and self.param_propagate_down[1]:
                ops.accumulate_channel_bias_grad(dy.reshape(dy.shape[0], self.num_output, -1),
                                                 self.blobs[1].diff)
            if want_weight or want_bottom:
                self._backward_data(dy, x_blob, want_bottom, want_weight)

    def _forward_data(self, x, y):
        ops.convolve(x, self.blobs[0].data, self.window(), y=y)

    def _backward_data(self, dy, x_blob, want_bottom, want_weight):
        """The bottom gradient (if wanted) and the weight gradient (if learned) of one pair."""
        ops.convolve_transpose(dy, self.blobs[0].data, self.window(),
                               dx=x_blob.diff if want_bottom else None, x=x_blob.data,
                               weight_diff=self.blobs[0].diff if want_weight else None)
