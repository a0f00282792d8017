"""Deconvolution: the transpose of Convolution (its forward is convolution's data backward).

It reuses ConvolutionLayer's parameter parsing, weight creation, chunking and
reshape checks; only the weight layout (channels, num_output/group, kh, kw),
the output size ``stride*(in-1) + dilation*(k-1)+1 - 2*pad`` and the work
differ.  The unfolded columns belong to the *top* here.
"""
import numpy as np

from ..cg import ops
from ..cg.workspace import workspace
from ..layer import register_layer
from .conv import ConvolutionLayer


def grouped(images, group):
    """(nb, C, plane) images -> (group, C/group, nb*plane) matrices (a copy)."""
    nb, channels, plane = images.shape
    matrices = images.reshape(nb, group, channels // group, plane).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(matrices).reshape(group, channels // group, nb * plane)


def ungrouped(matrices, out):
    """Write (group, C/group, nb*plane) matrices into images ``out`` (nb, C, plane)."""
    nb, _, plane = out.shape
    group, rows, _ = matrices.shape
    out.reshape(nb, group, rows, plane)[...] = \
        matrices.reshape(group, rows, nb, plane).transpose(2, 0, 1, 3)


@register_layer("Deconvolution")
class DeconvolutionLayer(ConvolutionLayer):

    def weight_shape(self):
        return (self.channels, self.num_output // self.group) + tuple(self.kernel)

    def output_hw(self, height, width):
        def size(extent, axis):
            span = self.dilation[axis] * (self.kernel[axis] - 1) + 1
            return self.stride[axis] * (extent - 1) + span - 2 * self.pad[axis]
        return size(height, 0), size(width, 1)

    def _weights(self, diff=False):
        """Per group: (channels/group, num_output/group * kh * kw)."""
        blob = self.blobs[0]
        return (blob.diff if diff else blob.data).reshape(self.group, self.channels // self.group,
                                                          -1)

    def _top_columns(self, y_images, plane):
        """im2col of top images: (num_output*kh*kw, nb*plane), plane = the bottom's H*W."""
        rows = self.num_output * self.kernel[0] * self.kernel[1]
        cols = workspace(0, (rows, y_images.shape[0] * plane))
        return ops.im2col(y_images, self.kernel, self.pad, self.stride, self.dilation, cols)

    def forward_cpu(self, bottom, top):
        weight = self._weights()
        rows = weight.shape[2] * self.group
        for x_blob, y_blob in zip(bottom, top):
            x, y = x_blob.data, y_blob.data
            plane = x.shape[2] * x.shape[3]
            for lo, hi in self._chunks(x.shape[0], rows, plane):
                x_mat = grouped(x[lo:hi].reshape(hi - lo, self.channels, plane), self.group)
                cols = workspace(0, (self.group, weight.shape[2], (hi - lo) * plane))
                for g in range(self.group):
                    ops.gemm(weight[g], x_mat[g], trans_a=True, out=cols[g])
                ops.col2im(cols.reshape(rows, -1), self.kernel, self.pad, self.stride,
                           self.dilation, y[lo:hi])
            if self.bias_term:
                ops.add_channel_bias(y.reshape(y.shape[0], self.num_output, -1),
                                     self.blobs[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if self.bias_term and self.param_propagate_down[1]:
            for y_blob in top:
                dy = y_blob.diff
                ops.accumulate_channel_bias_grad(dy.reshape(dy.shape[0], self.num_output, -1),
                                                 self.blobs[1].diff)
        for y_blob, x_blob, wanted in zip(top, bottom, propagate_down):
            if self.param_propagate_down[0] or wanted:
                self._backward_pair(y_blob.diff, x_blob, wanted)

    def _backward_pair(self, dy, x_blob, want_bottom):
        """Weight gradient (if learned) and bottom gradient (if wanted) of one bottom/top."""
        weight, weight_diff = self._weights(), self._weights(diff=True)
        rows = weight.shape[2] * self.group
        x = x_blob.data
        plane = x.shape[2] * x.shape[3]
        for lo, hi in self._chunks(x.shape[0], rows, plane):
            cols = self._top_columns(dy[lo:hi], plane).reshape(self.group, -1, (hi - lo) * plane)
            if self.param_propagate_down[0]:
                x_mat = grouped(x[lo:hi].reshape(hi - lo, self.channels, plane), self.group)
                for g in range(self.group):
                    ops.gemm(x_mat[g], cols[g], trans_b=True, beta=1.0, out=weight_diff[g])
            if want_bottom:
                dx_mat = np.empty((self.group, self.channels // self.group, (hi - lo) * plane),
                                  np.float32)
                for g in range(self.group):
                    ops.gemm(weight[g], cols[g], out=dx_mat[g])
                ungrouped(dx_mat, x_blob.diff[lo:hi].reshape(hi - lo, self.channels, plane))
