"""What the net's wiring step learns about each layer, kept once, per layer.

``Net`` builds one ``LayerFacts`` per layer (its blobs, their names, which
bottoms and whether the layer need a backward pass, its parameter blobs) and
one ``LearnableParam`` per parameter blob that owns its storage (what a solver
updates, with its multipliers).  Solvers, gradient buckets, the profiler and
the file formats read these records instead of re-deriving them from parallel
index lists.
"""
from dataclasses import dataclass, field
from typing import List

from .blob import Blob
from .errors import CaffeError

MULTIPLIERS = ("lr_mult", "decay_mult")


@dataclass(eq=False)
class LearnableParam:
    """A parameter blob that owns its storage, with the multipliers every sharer agrees on.

    ``layer_index`` and ``param_index`` place the owner, the first layer using it:
    sharers come later in the net, so backward finishes this gradient at the owner.
    """

    blob: Blob
    layer_index: int
    param_index: int
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    explicit: set = field(default_factory=set)     # multipliers some ParamSpec set

    def adopt_multipliers(self, spec, layer):
        """Take the multipliers ``spec`` sets; a shared parameter's specs must agree."""
        if spec is None:
            return
        for name in MULTIPLIERS:
            if not spec.HasField(name):
                continue
            value = getattr(spec, name)
            if name in self.explicit and getattr(self, name) != value:
                raise layer.error(f"shared param '{spec.name}' has conflicting {name}")
            setattr(self, name, value)
            self.explicit.add(name)


@dataclass(eq=False)
class LayerParam:
    """One of a layer's parameter blobs: its display name and the learnable it belongs to."""

    blob: Blob
    display_name: str
    learnable: LearnableParam

    @property
    def owns_storage(self):
        return self.learnable.blob is self.blob


@dataclass(eq=False)
class LayerFacts:
    """One layer as wired into the net."""

    index: int
    layer: object
    bottom_names: List[str]
    top_names: List[str]
    bottoms: List[Blob]
    tops: List[Blob]
    bottom_need_backward: List[bool]
    need_backward: bool = False
    params: List[LayerParam] = field(default_factory=list)

    def forward(self):
        """The layer's forward; returns its loss.  A failure names the layer."""
        layer = self.layer
        try:
            return layer.forward(self.bottoms, self.tops)
        except CaffeError:
            raise
        except Exception as exc:
            if layer.passes_errors_through:
                raise
            shapes = ", ".join(str(b.shape) for b in self.bottoms) or "none"
            raise layer.error(f"forward failed for bottom shapes {shapes}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def backward(self):
        """The layer's backward, if the net's analysis says it needs one."""
        if self.need_backward:
            self.layer.backward(self.tops, self.bottom_need_backward, self.bottoms)
