"""Accuracy: the fraction of samples whose label is among the top_k scores."""
import numpy as np

from ..cg import ops
from ..layer import Layer, register_layer
from .softmax import checked_labels, outer_channels_inner


@register_layer("Accuracy")
class AccuracyLayer(Layer):
    """Top 0: accuracy; optional top 1: accuracy per class (0 for absent classes)."""
    exact_bottoms = 2
    min_tops = 1
    max_tops = 2

    def layer_setup(self, bottom, top):
        p = self.param.accuracy_param
        self.top_k = p.top_k
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.axis = bottom[0].canonical_axis(p.axis)

    def reshape(self, bottom, top):
        outer, channels, inner = self.view = outer_channels_inner(bottom[0], self.axis)
        if self.top_k > channels:
            raise self.error(f"top_k {self.top_k} exceeds the {channels} classes")
        if outer * inner != bottom[1].count:
            raise self.error(f"{bottom[1].count} labels for {outer * inner} predictions "
                             f"(score shape {bottom[0].shape}, label shape {bottom[1].shape})")
        top[0].reshape(())
        if len(top) == 2:
            top[1].reshape(channels)

    def forward_cpu(self, bottom, top):
        outer, channels, inner = self.view
        labels, valid, count = checked_labels(self, bottom[1], channels, self.ignore_label)
        totals, rights = ops.accuracy_counts(bottom[0].data.reshape(self.view),
                                             labels.reshape(outer, inner),
                                             valid.reshape(outer, inner), self.top_k)
        top[0].data[...] = rights.sum() / count if count else 0.0
        if len(top) == 2:
            with np.errstate(invalid="ignore", divide="ignore"):
                top[1].data[...] = np.where(totals > 0, rights / totals, 0.0)

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("Accuracy has no gradient")

    def allow_force_backward(self, bottom_index):
        return False
