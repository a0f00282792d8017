"""The layer contract and the one registry of layer types.

A layer declares how many bottoms and tops it takes and implements
``layer_setup`` (read parameters, create ``self.blobs``), ``reshape`` (size the
tops from the bottoms), ``forward_cpu`` and ``backward_cpu``.  The base class
runs Caffe's fixed sequence around them: check blob counts, set up, reshape,
set loss weights; and it turns any top with a loss weight into loss, so every
layer can serve as a loss.

Parameter gradients are *accumulated* into ``blob.diff`` (the solver clears
them before each iteration): that is what makes ``iter_size`` and shared
parameters work, exactly as in Caffe.
"""
from .errors import NetError, layer_error
from .proto import caffe_pb2
from .registry import TypeRegistry

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST

LAYERS = TypeRegistry("layer")
register_layer = LAYERS.register


def layer_types():
    """The type names that can be created now, sorted (an opt-in type that is off,
    or one whose optional dependency is missing, is left out)."""
    _load_builtin_layers()
    return [name for name in LAYERS.names() if LAYERS.get(name).unavailable_reason() is None]


def create_layer(param):
    """Instantiate the layer that ``param.type`` names (Caffe's LayerRegistry)."""
    _load_builtin_layers()
    cls = LAYERS.get(param.type)
    if cls is None:
        raise NetError(f"layer '{param.name}': unknown layer type '{param.type}'; "
                       f"known types: {', '.join(layer_types())}")
    reason = cls.unavailable_reason()
    if reason is not None:
        raise layer_error(param, reason)
    return cls(param)


def _load_builtin_layers():
    import importlib
    importlib.import_module(__package__ + ".layers")  # importing registers every type


class Layer:
    """Base class of every layer; see the module docstring for the contract."""

    type_name = None
    exact_bottoms = min_bottoms = max_bottoms = None
    exact_tops = min_tops = max_tops = None
    equal_bottom_top = False
    auto_top_blobs = False
    # Loss layers get loss_weight 1 on their first top unless the prototxt says otherwise.
    default_loss_weight = 0.0
    # A layer running the user's own code lets the user's exceptions through unchanged
    # (as pycaffe does); the net wraps any other unexpected error in a NetError.
    passes_errors_through = False

    @classmethod
    def unavailable_reason(cls):
        """None if this type can be created now, else what to do to make it available."""
        return None

    def __init__(self, param):
        self.param = param
        self.phase = param.phase
        self.blobs = []
        self.param_propagate_down = []
        self.loss_weights = []

    @property
    def name(self):
        return self.param.name

    @property
    def type(self):
        return self.type_name

    def error(self, message):
        """A NetError that names this layer."""
        return layer_error(self.param, message)

    # ---- the fixed sequence ----------------------------------------------
    def setup(self, bottom, top):
        self.check_blob_counts(bottom, top)
        self.layer_setup(bottom, top)
        self.param_propagate_down = [True] * len(self.blobs)
        self.reshape(bottom, top)
        self.set_loss_weights(top)

    def layer_setup(self, bottom, top):
        """Read parameters and create ``self.blobs``; optional."""

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        """Reshape (as Caffe does before every forward), run, return the weighted loss."""
        self.reshape(bottom, top)
        self.forward_cpu(bottom, top)
        loss = 0.0
        for blob, weight in zip(top, self.loss_weights):
            if weight:
                loss += weight * float(blob.data.sum(dtype="float64"))
                blob.diff[...] = weight   # where backward of a loss starts
        return loss

    def backward(self, top, propagate_down, bottom):
        self.backward_cpu(top, propagate_down, bottom)

    def forward_cpu(self, bottom, top):
        raise NotImplementedError

    def backward_cpu(self, top, propagate_down, bottom):
        """Default: a layer with nothing to propagate."""

    def allow_force_backward(self, bottom_index):
        return True

    def restore_iteration(self, iteration, iter_size=1):
        """Continue with what training iteration ``iteration`` (of ``iter_size`` forward
        passes) reads: a resumed or re-divided run must see the batches an uninterrupted
        one would.  Layers that keep no position in their data do nothing."""

    # ---- helpers ---------------------------------------------------------
    def check_blob_counts(self, bottom, top):
        def check(what, n, exact, low, high):
            if exact is not None and n != exact:
                raise self.error(f"takes exactly {exact} {what} blob(s), got {n}")
            if low is not None and n < low:
                raise self.error(f"takes at least {low} {what} blob(s), got {n}")
            if high is not None and n > high:
                raise self.error(f"takes at most {high} {what} blob(s), got {n}")
        check("bottom", len(bottom), self.exact_bottoms, self.min_bottoms, self.max_bottoms)
        check("top", len(top), self.exact_tops, self.min_tops, self.max_tops)
        if self.equal_bottom_top and len(bottom) != len(top):
            raise self.error(f"needs as many tops as bottoms, got {len(bottom)} and {len(top)}")

    def set_loss_weights(self, top):
        weights = list(self.param.loss_weight)
        if not weights and self.default_loss_weight and top:
            weights = [self.default_loss_weight]
            # Caffe writes the default into the layer's parameters, so its caffemodels carry it.
            self.param.loss_weight.extend(weights)
        if len(weights) > len(top):
            raise self.error(f"has {len(weights)} loss_weight values but {len(top)} tops")
        self.loss_weights = weights + [0.0] * (len(top) - len(weights))

    def needed_top_count(self):
        """For ``auto_top_blobs`` layers: how many tops to create when fewer are named."""
        return max(self.min_tops or 0, self.exact_tops or 0)
