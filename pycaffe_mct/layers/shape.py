"""Layers that join, split, cut or repeat blobs along an axis: Concat, Slice, Crop, Tile."""
import numpy as np

from ..cg import ops
from ..layer import Layer, register_layer
from .scale import layer_axis


def joined_axis(layer, blob, p):
    """The axis of Concat/Slice: ``axis``, or the legacy ``*_dim`` field when set."""
    legacy = "concat_dim" if hasattr(p, "concat_dim") else "slice_dim"
    if p.HasField(legacy):
        if p.HasField("axis"):
            raise layer.error(f"give either axis or {legacy}, not both")
        return layer_axis(layer, blob, getattr(p, legacy))
    return layer_axis(layer, blob, p.axis)


def piece_offsets(num_axes, axis, sizes):
    """Per piece cut along ``axis`` with the given sizes: its offset on every axis."""
    starts = np.cumsum([0] + list(sizes[:-1])).tolist()
    return [(0,) * axis + (start,) + (0,) * (num_axes - axis - 1) for start in starts]


@register_layer("Concat")
class ConcatLayer(Layer):
    """Joins the bottoms along ``axis`` (default 1); all other axes must agree."""
    min_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        self.axis = joined_axis(self, bottom[0], self.param.concat_param)

    def reshape(self, bottom, top):
        first = bottom[0].shape
        for index, blob in enumerate(bottom[1:], 1):
            if blob.num_axes != len(first) or any(
                    a != b for i, (a, b) in enumerate(zip(blob.shape, first)) if i != self.axis):
                raise self.error(f"bottom {index} has shape {blob.shape}, bottom 0 has {first}: "
                                 f"all axes but the concat axis {self.axis} must agree")
        self.sizes = [blob.shape[self.axis] for blob in bottom]
        shape = list(first)
        shape[self.axis] = sum(self.sizes)
        top[0].reshape(shape)

    def forward_cpu(self, bottom, top):
        for offsets, blob in zip(piece_offsets(top[0].num_axes, self.axis, self.sizes), bottom):
            ops.place_window(blob.data, offsets, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        for offsets, blob, wanted in zip(piece_offsets(top[0].num_axes, self.axis, self.sizes),
                                         bottom, propagate_down):
            if wanted:
                ops.crop_forward(top[0].diff, offsets, blob.diff)


@register_layer("Slice")
class SliceLayer(Layer):
    """Cuts the bottom along ``axis`` at the slice points, or into equal parts."""
    exact_bottoms = 1
    min_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.slice_param
        self.axis = joined_axis(self, bottom[0], p)
        self.points = list(p.slice_point)
        if self.points and len(self.points) != len(top) - 1:
            raise self.error(f"{len(self.points)} slice_point values for {len(top)} tops "
                             f"(need one fewer than the tops)")

    def reshape(self, bottom, top):
        length = bottom[0].shape[self.axis]
        if self.points:
            bounds = [0] + self.points + [length]
            self.sizes = [b - a for a, b in zip(bounds, bounds[1:])]
            if any(size <= 0 for size in self.sizes):
                raise self.error(f"slice_point {self.points} must increase strictly inside "
                                 f"(0, {length}) for bottom shape {bottom[0].shape}")
        else:
            if length % len(top):
                raise self.error(f"axis {self.axis} of bottom shape {bottom[0].shape} does "
                                 f"not split evenly into {len(top)} tops")
            self.sizes = [length // len(top)] * len(top)
        for blob, size in zip(top, self.sizes):
            shape = list(bottom[0].shape)
            shape[self.axis] = size
            blob.reshape(shape)

    def forward_cpu(self, bottom, top):
        for offsets, blob in zip(piece_offsets(bottom[0].num_axes, self.axis, self.sizes), top):
            ops.crop_forward(bottom[0].data, offsets, blob.data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            for offsets, blob in zip(piece_offsets(bottom[0].num_axes, self.axis, self.sizes),
                                     top):
                ops.place_window(blob.diff, offsets, bottom[0].diff)


@register_layer("Crop")
class CropLayer(Layer):
    """Crops bottom 0 to bottom 1's shape on the axes from ``axis`` on, at ``offset``."""
    exact_bottoms = 2
    exact_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def layer_setup(self, bottom, top):
        p = self.param.crop_param
        self.axis = layer_axis(self, bottom[0], p.axis)
        cropped = bottom[0].num_axes - self.axis
        if len(p.offset) > 1 and len(p.offset) != cropped:
            raise self.error(f"{len(p.offset)} offsets for the {cropped} cropped axes of "
                             f"bottom shape {bottom[0].shape} (give 1 or {cropped})")
        self.offset_values = list(p.offset)

    def reshape(self, bottom, top):
        big, small = bottom[0].shape, bottom[1].shape
        if len(big) != len(small):
            raise self.error(f"bottoms have different numbers of axes: {big} and {small}")
        shape, self.offsets = list(big), [0] * len(big)
        for i in range(self.axis, len(big)):
            offset = (self.offset_values[0] if len(self.offset_values) == 1 else
                      self.offset_values[i - self.axis] if self.offset_values else 0)
            if offset + small[i] > big[i]:
                raise self.error(f"crop of size {small[i]} at offset {offset} on axis {i} does "
                                 f"not fit bottom shape {big} (reference shape {small})")
            shape[i], self.offsets[i] = small[i], offset
        top[0].reshape(shape)

    def forward_cpu(self, bottom, top):
        ops.crop_forward(bottom[0].data, self.offsets, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.crop_backward(top[0].diff, self.offsets, bottom[0].diff)


@register_layer("Tile")
class TileLayer(Layer):
    """Repeats the block of axes from ``axis`` on ``tiles`` times along ``axis``."""
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.tile_param
        self.axis = layer_axis(self, bottom[0], p.axis)
        self.tiles = p.tiles
        if self.tiles <= 0:
            raise self.error(f"tiles must be positive, got {self.tiles}")

    def reshape(self, bottom, top):
        shape = list(bottom[0].shape)
        shape[self.axis] *= self.tiles
        top[0].reshape(shape)
        self.view = (bottom[0].count_axes(0, self.axis), 1, bottom[0].count_axes(self.axis))

    def forward_cpu(self, bottom, top):
        ops.copy_into(bottom[0].data.reshape(self.view),
                      top[0].data.reshape(self.view[0], self.tiles, -1))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.tile_sum(top[0].diff.reshape(self.view[0], self.tiles, -1),
                         bottom[0].diff.reshape(self.view[0], -1))
