"""Softmax and SoftmaxWithLoss over an axis (default 1, the channels)."""
import numpy as np

from ..blob import Blob
from ..cg import ops
from ..layer import Layer, register_layer
from ..proto import caffe_pb2

_NORM = caffe_pb2.LossParameter


def outer_channels_inner(blob, axis):
    """View a blob as (outer, channels, inner) around ``axis``."""
    return (blob.count_axes(0, axis), blob.shape[axis], blob.count_axes(axis + 1))


def checked_labels(layer, blob, classes, ignore_label=None, weights=None):
    """(int32 labels, float32 weights, weight sum) of a label blob, from the core group's
    ``prediction_labels``; a label outside [0, classes) is the layer's error."""
    labels, weights, total, bad = ops.prediction_labels(blob.data, classes, ignore_label,
                                                        weights)
    if bad is not None:
        raise layer.error(f"label {bad} is outside [0, {classes})")
    return labels, weights, total


@register_layer("Softmax")
class SoftmaxLayer(Layer):
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        self.axis = bottom[0].canonical_axis(self.param.softmax_param.axis)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)
        self.view = outer_channels_inner(bottom[0], self.axis)

    def forward_cpu(self, bottom, top):
        ops.softmax_forward(bottom[0].data.reshape(self.view), top[0].data.reshape(self.view))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.softmax_backward(top[0].data.reshape(self.view), top[0].diff.reshape(self.view),
                                 bottom[0].diff.reshape(self.view))


class LossLayer(Layer):
    """Base of loss layers: scalar top with loss_weight 1 unless told otherwise."""
    exact_bottoms = 2
    min_tops = 1
    default_loss_weight = 1.0
    auto_top_blobs = True
    shared_weight_sum = None

    def needed_top_count(self):
        return 1

    def share_weight_sum(self, normalizer):
        """Divide by ``normalizer`` instead of this batch's sum of sample weights (VALID
        normalisation), or by that sum again with None.

        Data-parallel ranks each hold part of a batch whose weights differ from rank
        to rank (MCT's selections); with the whole batch's normaliser divided by the
        rank count on every rank, the averaged gradient is exactly the whole batch's.
        """
        self.shared_weight_sum = normalizer

    def valid_normalizer(self, weight_sum):
        """The normaliser of weighted predictions: the shared one if set, else
        ``max(1, weight_sum)``."""
        if self.shared_weight_sum is not None:
            return float(self.shared_weight_sum)
        return max(1.0, float(weight_sum))

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1      # labels get no gradient

    def reshape(self, bottom, top):
        if bottom[0].shape[0] != bottom[1].shape[0]:
            raise self.error(f"bottoms disagree on the batch size: {bottom[0].shape} and "
                             f"{bottom[1].shape}")
        top[0].reshape(())

    def normalizer(self, mode, outer, inner, valid):
        """Caffe's LossLayer::GetNormalizer, never below 1."""
        if mode == _NORM.FULL:
            value = outer * inner
        elif mode == _NORM.VALID:
            value = outer * inner if valid < 0 else valid
        elif mode == _NORM.BATCH_SIZE:
            value = outer
        else:
            value = 1.0
        return max(1.0, float(value))

    def normalization_mode(self):
        p = self.param.loss_param
        if not p.HasField("normalization") and p.HasField("normalize"):
            return _NORM.VALID if p.normalize else _NORM.BATCH_SIZE
        return p.normalization


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(LossLayer):
    """Multinomial logistic loss of the softmax of bottom 0 against labels in bottom 1.

    pycaffe_mct addition: an optional third bottom gives each prediction a
    weight (a 0/1 mask for sample selection, say); the loss is the weighted
    sum, and VALID normalisation divides by the sum of the weights.
    """
    exact_bottoms = None
    min_bottoms = 2
    max_bottoms = 3
    max_tops = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0      # neither labels nor weights get a gradient

    def layer_setup(self, bottom, top):
        self.prob = Blob()
        self.axis = bottom[0].canonical_axis(self.param.softmax_param.axis)
        p = self.param.loss_param
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.mode = self.normalization_mode()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.prob.reshape(bottom[0].shape)
        self.view = outer_channels_inner(bottom[0], self.axis)
        outer, _, inner = self.view
        if outer * inner != bottom[1].count:
            raise self.error(f"{bottom[1].count} labels for {outer * inner} predictions: "
                             f"label shape {bottom[1].shape}, score shape {bottom[0].shape}, "
                             f"axis {self.axis}")
        if len(bottom) == 3 and bottom[2].count != bottom[1].count:
            raise self.error(f"{bottom[2].count} weights for {bottom[1].count} labels: "
                             f"weight shape {bottom[2].shape}, label shape {bottom[1].shape}")
        if len(top) == 2:
            top[1].reshape(bottom[0].shape)

    def _predictions(self, bottom):
        """Labels, per-prediction weights (the valid flags, times the weight bottom if given)
        and the normaliser, all (outer, inner)."""
        outer, channels, inner = self.view
        labels, weights, total = checked_labels(
            self, bottom[1], channels, self.ignore_label,
            bottom[2].data if len(bottom) == 3 else None)
        norm = self.normalizer(self.mode, outer, inner, total)
        if self.mode == _NORM.VALID and len(bottom) == 3:
            norm = self.valid_normalizer(total)
        return labels.reshape(outer, inner), weights.reshape(outer, inner), norm

    def forward_cpu(self, bottom, top):
        prob = self.prob.data.reshape(self.view)
        ops.softmax_forward(bottom[0].data.reshape(self.view), prob)
        labels, weights, norm = self._predictions(bottom)
        # Caffe clips the picked probability at FLT_MIN before the log.
        top[0].data[...] = ops.label_log_loss(prob, labels, weights,
                                              np.finfo(np.float32).tiny) / norm
        if len(top) == 2:
            ops.copy_into(self.prob.data, top[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1] or (len(bottom) == 3 and propagate_down[2]):
            raise self.error("cannot back-propagate to the labels or weights")
        if not propagate_down[0]:
            return
        labels, weights, norm = self._predictions(bottom)
        scale = top[0].diff.item() / norm
        ops.label_gradient(self.prob.data.reshape(self.view), labels, weights, scale,
                           bottom[0].diff.reshape(self.view))
