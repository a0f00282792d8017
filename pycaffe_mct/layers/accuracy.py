"""Accuracy: the fraction of samples whose label is among the top_k scores."""
import numpy as np

from ..layer import Layer, register_layer
from .softmax import outer_channels_inner


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
        scores = bottom[0].data.reshape(self.view)
        labels = bottom[1].data.reshape(outer, inner).astype(np.int64)
        valid = np.ones(labels.shape, dtype=bool)
        if self.ignore_label is not None:
            valid = labels != self.ignore_label
        if (valid & ((labels < 0) | (labels >= channels))).any():
            raise self.error(f"a label is outside [0, {channels})")
        safe = np.where(valid, labels, 0)
        truth = np.take_along_axis(scores, safe[:, None, :], axis=1)
        # Caffe counts the other classes scoring at least as high as the true one:
        # a tie counts against the prediction.
        better = (scores >= truth).sum(axis=1) - 1
        correct = (better < self.top_k) & valid
        total = valid.sum()
        top[0].data[...] = correct.sum() / total if total else 0.0
        if len(top) == 2:
            per_class_total = np.bincount(labels[valid], minlength=channels)
            per_class_right = np.bincount(labels[correct], minlength=channels)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates = np.where(per_class_total > 0, per_class_right / per_class_total, 0.0)
            top[1].data[...] = rates

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("Accuracy has no gradient")

    def allow_force_backward(self, bottom_index):
        return False
