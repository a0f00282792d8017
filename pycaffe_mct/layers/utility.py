"""Layers that move or re-view data: Split, Flatten, Reshape, Silence."""
import math

from ..cg import ops
from ..layer import Layer, register_layer


@register_layer("Split")
class SplitLayer(Layer):
    """Hands one blob to several readers; backward sums their gradients."""
    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom, top):
        for blob in top:
            if blob is bottom[0]:
                raise self.error("a Split top cannot be its bottom (no in-place split)")
            blob.reshape(bottom[0].shape)
            blob.share_data(bottom[0])

    def forward_cpu(self, bottom, top):
        """Tops share the bottom's data: nothing to copy."""

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        ops.sum_into([blob.diff for blob in top], bottom[0].diff)


class ViewLayer(Layer):
    """Base of layers whose top is the bottom seen with another shape."""
    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise self.error("cannot work in place (top and bottom must differ)")
        top[0].view_of(bottom[0], self.top_shape(bottom[0]))

    def forward_cpu(self, bottom, top):
        """Data is shared."""

    def backward_cpu(self, top, propagate_down, bottom):
        """Diff is shared."""


@register_layer("Flatten")
class FlattenLayer(ViewLayer):
    """Collapse axes [axis, end_axis] into one."""

    def top_shape(self, blob):
        p = self.param.flatten_param
        start = blob.canonical_axis(p.axis)
        end = blob.canonical_axis(p.end_axis)
        if end < start:
            raise self.error(f"end_axis {p.end_axis} comes before axis {p.axis} for "
                             f"shape {blob.shape}")
        return blob.shape[:start] + (blob.count_axes(start, end + 1),) + blob.shape[end + 1:]


@register_layer("Reshape")
class ReshapeLayer(ViewLayer):
    """Caffe's Reshape: 0 copies a bottom dimension, -1 is inferred, over [axis, axis+num_axes)."""

    def top_shape(self, blob):
        p = self.param.reshape_param
        dims = list(p.shape.dim)
        if dims.count(-1) > 1:
            raise self.error(f"reshape_param has more than one -1 in {dims}")
        n = blob.num_axes
        start = p.axis + n + 1 if p.axis < 0 else p.axis
        if not 0 <= start <= n:
            raise self.error(f"axis {p.axis} out of range for shape {blob.shape}")
        end = n if p.num_axes == -1 else start + p.num_axes
        if p.num_axes < -1 or end > n:
            raise self.error(f"num_axes {p.num_axes} out of range for shape {blob.shape}")
        middle = []
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= n:
                    raise self.error(f"dim {i} is 0 (copy) but the bottom {blob.shape} has "
                                     f"no axis {start + i}")
                middle.append(blob.shape[start + i])
            else:
                middle.append(d)
        shape = list(blob.shape[:start]) + middle + list(blob.shape[end:])
        if -1 in shape:
            known = 1
            for d in shape:
                known *= d if d != -1 else 1
            if known == 0 or blob.count % known:
                raise self.error(f"cannot infer -1 in {dims} for bottom shape {blob.shape}")
            shape[shape.index(-1)] = blob.count // known
        if any(d < 0 for d in shape) or math.prod(shape) != blob.count:
            raise self.error(f"shape {dims} does not fit bottom shape {blob.shape} "
                             f"({blob.count} values)")
        return tuple(shape)


@register_layer("Silence")
class SilenceLayer(Layer):
    """Consumes blobs so they are not net outputs; their gradient is zero."""
    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom, top):
        """No tops."""

    def forward_cpu(self, bottom, top):
        """Nothing to compute."""

    def backward_cpu(self, top, propagate_down, bottom):
        for blob, wanted in zip(bottom, propagate_down):
            if wanted:
                ops.fill(blob.diff, 0.0)
