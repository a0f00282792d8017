"""Layers that create blobs from nothing: Input (fed by the user) and DummyData."""
from ..fillers import fill
from ..layer import Layer, register_layer
from ..proto import caffe_pb2


def _shapes_for_tops(layer, shapes, n_tops):
    """One shape for every top, or one per top."""
    if len(shapes) not in (1, n_tops):
        raise layer.error(f"gives {len(shapes)} shapes for {n_tops} tops; "
                          f"give one shape, or one per top")
    return [tuple(shapes[0 if len(shapes) == 1 else i]) for i in range(n_tops)]


@register_layer("Input")
class InputLayer(Layer):
    """Tops whose values the user writes; their shapes come from input_param."""
    exact_bottoms = 0
    min_tops = 1

    def layer_setup(self, bottom, top):
        shapes = [list(s.dim) for s in self.param.input_param.shape]
        if shapes:
            for blob, shape in zip(top, _shapes_for_tops(self, shapes, len(top))):
                blob.reshape(shape)

    def reshape(self, bottom, top):
        """The user reshapes inputs directly; nothing to do."""

    def forward_cpu(self, bottom, top):
        """The values were written by the user."""


@register_layer("DummyData")
class DummyDataLayer(Layer):
    """Tops filled by fillers: constant ones once, random ones at every forward."""
    exact_bottoms = 0
    min_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.dummy_data_param
        shapes = self._shapes(p, len(top))
        fillers = list(p.data_filler) or [caffe_pb2.FillerParameter(type="constant")]
        if len(fillers) not in (1, len(top)):
            raise self.error(f"{len(fillers)} data_filler entries for {len(top)} tops")
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(len(top))]
        for blob, shape, filler in zip(top, shapes, self.fillers):
            blob.reshape(shape)
            fill(blob, filler)

    def _shapes(self, p, n_tops):
        """One shape per top, from ``shape`` or the legacy num/channels/height/width lists."""
        legacy = [list(p.num), list(p.channels), list(p.height), list(p.width)]
        if any(legacy) and p.shape:
            raise self.error("give shape or num/channels/height/width, not both")
        if p.shape:
            return _shapes_for_tops(self, [list(s.dim) for s in p.shape], n_tops)
        if not any(legacy):
            raise self.error("dummy_data_param gives no shape")
        for name, values in zip(("num", "channels", "height", "width"), legacy):
            if len(values) not in (1, n_tops):
                raise self.error(f"{name} has {len(values)} values for {n_tops} tops; "
                                 f"give one, or one per top")
        return [tuple(v[0 if len(v) == 1 else i] for v in legacy) for i in range(n_tops)]

    def reshape(self, bottom, top):
        """Shapes are fixed at set-up."""

    def forward_cpu(self, bottom, top):
        for blob, filler in zip(top, self.fillers):
            if filler.type != "constant":
                fill(blob, filler)


