"""Convolution: im2col over a chunk of images, then one GEMM per group.

Weights are (num_output, channels/group, kh, kw) as in Caffe.  Small feature
maps are processed in chunks of images whose unfolded columns fit a fixed
workspace, so one GEMM covers many images while memory stays bounded whatever
the batch size; the GEMM's (O, images*plane) result is then transposed into
place.  When one image's GEMM is large on its own, images go one at a time:
the GEMM writes straight into the top, and a 1x1 stride-1 unpadded
convolution needs no im2col at all (the image is its own column matrix).
"""

from ..cg import ops
from ..cg.workspace import workspace
from ..fillers import weight_and_bias
from ..layer import Layer, register_layer

# Columns of at most this many floats per chunk (16 MB).
CHUNK_FLOATS = 4 << 20
# Images whose GEMM has at least this many multiply-adds per group go one at a time
# (below it, BLAS threads are better fed by a GEMM over many images).
PER_IMAGE_MACS = 1 << 24


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
        out_h = ops.conv_out_size(height, self.kernel[0], self.pad[0], self.stride[0],
                                  self.dilation[0])
        out_w = ops.conv_out_size(width, self.kernel[1], self.pad[1], self.stride[1],
                                  self.dilation[1])
        return out_h, out_w

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

    # ---- the work --------------------------------------------------------
    def _chunks(self, n_images, rows, plane):
        macs = (self.num_output // self.group) * (rows // self.group) * plane
        step = 1 if macs >= PER_IMAGE_MACS else max(1, CHUNK_FLOATS // max(rows * plane, 1))
        for start in range(0, n_images, step):
            yield start, min(start + step, n_images)

    def _pointwise(self):
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.pad == (0, 0)

    def _columns(self, x):
        """The im2col matrix of images x (nb, C, H, W): x itself for one image of a
        pointwise convolution (read-only then), else workspace slot 0."""
        nb = x.shape[0]
        out_h, out_w = self.output_hw(x.shape[2], x.shape[3])
        rows = self.channels * self.kernel[0] * self.kernel[1]
        if nb == 1 and self._pointwise():
            return x.reshape(rows, out_h * out_w)
        cols = workspace(0, (rows, nb * out_h * out_w))
        return ops.im2col(x, self.kernel, self.pad, self.stride, self.dilation, cols)

    def _group_rows(self, array, lo, hi, plane):
        """Rows (group, O/group, images*plane) of a top-shaped array for images lo..hi:
        a view for one image, else a transposed copy in workspace slot 1."""
        if hi - lo == 1:
            return array[lo].reshape(self.group, -1, plane)
        rows = workspace(1, (self.group, self.num_output // self.group, (hi - lo) * plane))
        rows.reshape(self.group, -1, hi - lo, plane)[...] = (
            array[lo:hi].reshape(hi - lo, self.group, -1, plane).transpose(1, 2, 0, 3))
        return rows

    def forward_cpu(self, bottom, top):
        weight = self.blobs[0].data.reshape(self.group, self.num_output // self.group, -1)
        for x_blob, y_blob in zip(bottom, top):
            x, y = x_blob.data, y_blob.data
            plane = y.shape[2] * y.shape[3]
            rows = weight.shape[2] * self.group
            for lo, hi in self._chunks(x.shape[0], rows, plane):
                nb = hi - lo
                cols = self._columns(x[lo:hi]).reshape(self.group, -1, nb * plane)
                if nb == 1:
                    out = y[lo].reshape(self.group, -1, plane)
                    for g in range(self.group):
                        ops.gemm(weight[g], cols[g], out=out[g])
                    continue
                product = workspace(1, (weight.shape[1], nb * plane))
                out = y[lo:hi].reshape(nb, self.group, -1, plane)
                for g in range(self.group):
                    ops.gemm(weight[g], cols[g], out=product)
                    out[:, g] = product.reshape(-1, nb, plane).transpose(1, 0, 2)
            if self.bias_term:
                ops.add_channel_bias(y.reshape(y.shape[0], self.num_output, plane),
                                     self.blobs[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        weight = self.blobs[0].data.reshape(self.group, self.num_output // self.group, -1)
        weight_diff = self.blobs[0].diff.reshape(weight.shape)
        for index, (y_blob, x_blob) in enumerate(zip(top, bottom)):
            dy = y_blob.diff
            plane = dy.shape[2] * dy.shape[3]
            if self.bias_term and self.param_propagate_down[1]:
                ops.accumulate_channel_bias_grad(dy.reshape(dy.shape[0], self.num_output, plane),
                                                 self.blobs[1].diff)
            want_weight = self.param_propagate_down[0]
            if not (want_weight or propagate_down[index]):
                continue
            x = x_blob.data
            rows = weight.shape[2] * self.group
            for lo, hi in self._chunks(x.shape[0], rows, plane):
                nb = hi - lo
                # (nb, O, plane) -> (group, O/group, nb*plane), matching the columns' order.
                dy_mat = self._group_rows(dy, lo, hi, plane)
                cols = self._columns(x[lo:hi]).reshape(self.group, -1, nb * plane)
                if want_weight:
                    for g in range(self.group):
                        ops.gemm(dy_mat[g], cols[g], trans_b=True, beta=1.0, out=weight_diff[g])
                if not propagate_down[index]:
                    continue
                if nb == 1 and self._pointwise():        # dx is its own column matrix
                    cols = x_blob.diff[lo].reshape(self.group, -1, plane)
                for g in range(self.group):
                    ops.gemm(weight[g], dy_mat[g], trans_a=True, out=cols[g])
                if not (nb == 1 and self._pointwise()):
                    ops.col2im(cols.reshape(rows, -1), self.kernel, self.pad, self.stride,
                               self.dilation, x_blob.diff[lo:hi])
