"""Relate the spatial coordinates of two NetSpec tops (pycaffe's ``caffe.coord_map``).

FCN-style nets upsample a coarse map and crop it to the input; ``crop(a, b)``
works out the Crop layer that aligns top ``a`` with top ``b``.

A layer's map is ``(axis, scale, shift)``: output coordinate ``scale * x + shift``
for input coordinate ``x``, from axis ``axis`` on (``None``: any axis, for
element-wise layers).  Convolution and Pooling with stride s, kernel extent k
and padding p give ``(1/s, (p - (k-1)/2) / s)``; Deconvolution the inverse,
``(s, (k-1)/2 - p)``; Crop with offset o gives ``(1, -o)``.  Maps compose
along the graph; ``coord_map_from_to`` walks both tops back to a common
ancestor.
"""
import numpy as np

from .errors import CaffeError
from .layers import Crop

# Layers whose output pixel i depends on input pixel i only.
ELEMENTWISE_LAYERS = frozenset([
    "AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Exp", "Log", "LRN",
    "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Split", "TanH", "Threshold"])
SLIDING_WINDOW_LAYERS = frozenset(["Convolution", "Pooling", "Im2col"])
IDENTITY = (None, 1, 0)


class UndefinedMapException(CaffeError):
    """The layer has no coordinate map (an InnerProduct, say): the walk stops there."""


class AxisMismatchException(CaffeError):
    """Two maps along a path start at different axes."""


class CoordMapError(CaffeError, RuntimeError):
    """The two tops share no ancestor through layers with coordinate maps."""


class CropError(CaffeError, AssertionError):
    """No Crop layer can align the tops (different scales, or a negative or fractional offset)."""


def _window_params(fn):
    """(axis, stride, kernel extent, pad) of a Convolution/Deconvolution/Pooling layer."""
    params = fn.params.get("convolution_param", fn.params)
    legacy = {"kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w"} & set(params)
    if legacy:
        raise CropError(f"{fn.type_name}: coordinate maps need kernel_size/stride/pad, "
                        f"not the 2-d fields {sorted(legacy)}")
    kernel = np.array(params["kernel_size"], ndmin=1)
    dilation = np.array(params.get("dilation", 1), ndmin=1)
    stride = np.array(params.get("stride", 1), ndmin=1)
    pad = np.array(params.get("pad", 0), ndmin=1)
    return params.get("axis", 1), stride, dilation * (kernel - 1) + 1, pad


def coord_map(fn):
    """The (axis, scale, shift) map of one NetSpec layer function."""
    if fn.type_name in SLIDING_WINDOW_LAYERS:
        axis, stride, extent, pad = _window_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, extent, pad = _window_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name in ELEMENTWISE_LAYERS:
        return IDENTITY
    if fn.type_name == "Crop":
        params = fn.params.get("crop_param", fn.params)
        offset = np.array(params.get("offset", 0), ndmin=1)
        # The map's axis is the last one before the cropped ones (Crop's default axis is 2).
        return params.get("axis", 2) - 1, 1, -offset
    raise UndefinedMapException(f"{fn.type_name} has no coordinate map")


def compose(first, then):
    """The map of applying ``first``'s layer after ``then``'s (``then`` nearer the input)."""
    axis1, scale1, shift1 = first
    axis2, scale2, shift2 = then
    if axis1 is not None and axis2 is not None and axis1 != axis2:
        raise AxisMismatchException(f"coordinate maps on axes {axis1} and {axis2}")
    axis = axis2 if axis1 is None else axis1
    return axis, scale1 * scale2, scale1 * shift2 + shift1


def inverse(mapping):
    """The map back from output to input coordinates."""
    axis, scale, shift = mapping
    return axis, 1 / scale, -shift / scale


def _mapped_bottoms(top):
    """The bottoms a coordinate walk follows: all, except Crop's reference (second) bottom."""
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _walk_back(top):
    """Yield ``(ancestor, map from the ancestor's coordinates to top's)``, from ``top``
    itself backwards through layers with coordinate maps, each ancestor once."""
    maps = {top: IDENTITY}
    pending = [top]
    while pending:
        current = pending.pop()
        yield current, maps[current]
        try:
            step = coord_map(current.fn)
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(current):
            if bottom not in maps:
                maps[bottom] = compose(maps[current], step)
                pending.append(bottom)


def coord_map_from_to(top_from, top_to):
    """The (axis, scale, shift) taking coordinates of ``top_from`` to those of ``top_to``."""
    from_maps = dict(_walk_back(top_from))
    for ancestor, to_map in _walk_back(top_to):
        if ancestor in from_maps:
            return compose(to_map, inverse(from_maps[ancestor]))
    raise CoordMapError(f"no coordinate map from {top_from.fn.type_name} to "
                        f"{top_to.fn.type_name}: they share no input through spatial layers")


def crop(top_from, top_to):
    """A NetSpec Crop layer cropping ``top_from`` to the coordinates of ``top_to``."""
    axis, scale, shift = coord_map_from_to(top_from, top_to)
    if not np.all(scale == 1):
        raise CropError(f"cannot crop across a change of scale (scale {scale})")
    if not np.all(shift <= 0):
        raise CropError(f"cannot crop by a negative offset (shift {shift})")
    if not np.all(np.round(shift) == shift):
        raise CropError(f"cannot crop by a fractional offset (shift {shift})")
    offsets = [int(v) for v in -np.round(np.atleast_1d(shift))]
    return Crop(top_from, top_to, crop_param=dict(axis=axis + 1, offset=offsets))
