"""Scale and Bias: multiply or add a blob broadcast over the axes around it.

The operand covers axes [axis, axis + its number of axes) of bottom 0 and is
either learned (one bottom) or given as bottom 1.  Bottom 0 is then viewed as
(outer, dim, inner) and the operand as (dim,).
"""
from ..blob import Blob
from ..cg import ops
from ..fillers import fill
from ..layer import Layer, register_layer


def operand_axes(layer, blob, axis, num_axes):
    """(start, end) of the axes of ``blob`` a learned operand covers, checked."""
    start = layer_axis(layer, blob, axis)
    if num_axes < -1:
        raise layer.error(f"num_axes {num_axes} must be -1 or more")
    end = blob.num_axes if num_axes == -1 else start + num_axes
    if end > blob.num_axes:
        raise layer.error(f"axis {axis} with num_axes {num_axes} runs past the "
                          f"{blob.num_axes} axes of bottom shape {blob.shape}")
    return start, end


def layer_axis(layer, blob, axis):
    """``blob.canonical_axis`` with an error that names the layer."""
    if not -blob.num_axes <= axis < max(blob.num_axes, 1):
        raise layer.error(f"axis {axis} out of range for bottom shape {blob.shape}")
    return axis % blob.num_axes if blob.num_axes else 0


def learned_operand(shape, filler, default_value):
    """A parameter blob of ``shape``, filled by ``filler`` or with a constant."""
    blob = Blob()
    blob.reshape(tuple(shape))      # () makes a scalar
    if filler is None:
        blob.data[...] = default_value
    else:
        fill(blob, filler)
    return blob


class BroadcastLayer(Layer):
    """Shared shape logic of Scale and Bias."""
    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1

    def learned_blobs(self, bottom, p, default_value):
        """Set ``self.start``; the learned operand as a list: empty when bottom 1 is given."""
        self.start = self.operand_start(bottom, p.axis)
        if len(bottom) == 2:
            return []
        return [self.operand_blob(bottom, p, p.filler if p.HasField("filler") else None,
                                  default_value)]

    def operand_blob(self, bottom, p, filler, default_value):
        """A blob over p.axis/p.num_axes of bottom 0, from ``filler`` or the constant."""
        start, end = operand_axes(self, bottom[0], p.axis, p.num_axes)
        return learned_operand(bottom[0].shape[start:end], filler, default_value)

    def operand(self, bottom):
        """The operand blob: bottom 1 or the learned blob 0."""
        return bottom[1] if len(bottom) == 2 else self.blobs[0]

    def operand_start(self, bottom, axis):
        """Where the operand's axes begin in bottom 0 (Caffe: 0 for a scalar bottom 1)."""
        if len(bottom) == 2 and bottom[1].num_axes == 0:
            return 0
        return layer_axis(self, bottom[0], axis)

    def reshape(self, bottom, top):
        operand = self.operand(bottom)
        start = self.start
        shape = bottom[0].shape
        if shape[start:start + operand.num_axes] != operand.shape:
            raise self.error(f"operand shape {operand.shape} does not match bottom shape "
                             f"{shape} from axis {start}")
        if top[0] is not bottom[0]:
            top[0].reshape(shape)
        self.view = (bottom[0].count_axes(0, start), operand.count,
                     bottom[0].count_axes(start + operand.num_axes))

    def sum_outer_inner(self, values, view=None):
        """Sum over the outer and inner axes of ``values`` seen as ``view`` (default self.view)."""
        values = values.reshape(view or self.view)
        return ops.channel_sums(values, values)[0]


@register_layer("Scale")
class ScaleLayer(BroadcastLayer):
    """y = x * s (+ b with bias_term); s defaults to ones, b to zeros."""

    def layer_setup(self, bottom, top):
        p = self.param.scale_param
        self.blobs = self.learned_blobs(bottom, p, 1.0)
        self.bias_index = None
        if p.bias_term:
            self.bias_index = len(self.blobs)
            self.blobs.append(self.operand_blob(
                bottom, p, p.bias_filler if p.HasField("bias_filler") else None, 0.0))
        self.saved_input = Blob()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if self.bias_index is not None:
            bias = self.blobs[self.bias_index]
            self.bias_view = (bottom[0].count_axes(0, self.start), bias.count,
                              bottom[0].count_axes(self.start + bias.num_axes))
        if top[0] is bottom[0]:
            self.saved_input.reshape(bottom[0].shape)

    def forward_cpu(self, bottom, top):
        if top[0] is bottom[0]:
            ops.copy_into(bottom[0].data, self.saved_input.data)
        scale = self.operand(bottom).data.reshape(-1)
        bias = None if self.bias_index is None else self.blobs[self.bias_index].data.reshape(-1)
        # One pass when scale and bias cover the same axes (always, unless bottom 1 is given).
        together = bias is not None and self.bias_view == self.view
        ops.channel_linear([(bottom[0].data.reshape(self.view), scale)],
                           top[0].data.reshape(self.view), shift=bias if together else None)
        if bias is not None and not together:
            y = top[0].data.reshape(self.bias_view)
            ops.channel_linear([(y, 1.0)], y, shift=bias)

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].diff
        if self.bias_index is not None and self.param_propagate_down[self.bias_index]:
            bias = self.blobs[self.bias_index]
            bias.diff[...] += self.sum_outer_inner(dy, self.bias_view).reshape(bias.shape)
        x = self.saved_input.data if top[0] is bottom[0] else bottom[0].data
        learned = len(bottom) == 1
        if (learned and self.param_propagate_down[0]) or (not learned and propagate_down[1]):
            grad = ops.channel_sums(dy.reshape(self.view), x.reshape(self.view))[1]
            grad = grad.reshape(self.operand(bottom).shape)
            if learned:
                self.blobs[0].diff[...] += grad
            else:
                bottom[1].diff[...] = grad
        if propagate_down[0]:
            ops.channel_linear([(dy.reshape(self.view), self.operand(bottom).data.reshape(-1))],
                               bottom[0].diff.reshape(self.view))


@register_layer("Bias")
class BiasLayer(BroadcastLayer):
    """y = x + b; b defaults to zeros."""

    def layer_setup(self, bottom, top):
        self.blobs = self.learned_blobs(bottom, self.param.bias_param, 0.0)

    def forward_cpu(self, bottom, top):
        ops.channel_linear([(bottom[0].data.reshape(self.view), 1.0)],
                           top[0].data.reshape(self.view),
                           shift=self.operand(bottom).data.reshape(-1))

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].diff
        learned = len(bottom) == 1
        if (learned and self.param_propagate_down[0]) or (not learned and propagate_down[1]):
            grad = self.sum_outer_inner(dy).reshape(self.operand(bottom).shape)
            if learned:
                self.blobs[0].diff[...] += grad
            else:
                bottom[1].diff[...] = grad
        if propagate_down[0] and top[0] is not bottom[0]:
            ops.copy_into(dy, bottom[0].diff)

