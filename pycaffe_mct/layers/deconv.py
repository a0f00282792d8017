"""Deconvolution: the transpose of Convolution (its forward is convolution's data backward).

It reuses ConvolutionLayer's parameter parsing, weight creation and reshape
checks; only the weight layout (channels, num_output/group, kh, kw), the
output size ``stride*(in-1) + dilation*(k-1)+1 - 2*pad`` and the roles in the
work differ: the window slides over the *top*, so the forward is
``ops.convolve_transpose`` from bottom to top and the backward ``ops.convolve``
of the top gradient (one unfolding serves the bottom and weight gradients).
"""
from ..cg import ops
from ..layer import register_layer
from .conv import ConvolutionLayer


@register_layer("Deconvolution")
class DeconvolutionLayer(ConvolutionLayer):

    def weight_shape(self):
        return (self.channels, self.num_output // self.group) + tuple(self.kernel)

    def output_hw(self, height, width):
        def size(extent, axis):
            span = self.dilation[axis] * (self.kernel[axis] - 1) + 1
            return self.stride[axis] * (extent - 1) + span - 2 * self.pad[axis]
        return size(height, 0), size(width, 1)

    def _forward_data(self, x, y):
        ops.convolve_transpose(x, self.blobs[0].data, self.window(), dx=y)

    def _backward_data(self, dy, x_blob, want_bottom, want_weight):
        ops.convolve(dy, self.blobs[0].data, self.window(),
                     y=x_blob.diff if want_bottom else None, top_diff=x_blob.data,
                     weight_diff=self.blobs[0].diff if want_weight else None)
