"""Loss layers beyond SoftmaxWithLoss, with Caffe's normalisation of each.

EuclideanLoss, HingeLoss, MultinomialLogisticLoss and ContrastiveLoss divide by
the batch size; SigmoidCrossEntropyLoss and InfogainLoss follow
``loss_param.normalization`` (defaults BATCH_SIZE and VALID respectively).
"""
import numpy as np

from ..blob import Blob, proto_array
from ..cg import ops
from ..proto import caffe_pb2
from ..proto_io import read_binary_proto
from ..errors import CaffeError
from ..layer import register_layer
from .softmax import LossLayer, checked_labels, outer_channels_inner

_NORM = caffe_pb2.LossParameter
_HINGE = caffe_pb2.HingeLossParameter
LOG_THRESHOLD = 1e-20   # Caffe's kLOG_THRESHOLD: probabilities are clipped here before log


def top_weight(top):
    """The loss weight Caffe's base forward left in the scalar top's diff."""
    return float(top[0].diff.item())


def one_label_per_sample(layer, bottom):
    """Reshape check of the losses that take one label per sample."""
    if bottom[1].count != bottom[0].shape[0]:
        raise layer.error(f"needs one label per sample: label shape {bottom[1].shape}, "
                          f"score shape {bottom[0].shape}")


@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """sum((a - b)^2) / (2 N); both bottoms receive gradients."""

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count_axes(1) != bottom[1].count_axes(1):
            raise self.error(f"bottoms must have the same size per sample: {bottom[0].shape} "
                             f"and {bottom[1].shape}")
        self.difference = np.empty(bottom[0].shape, np.float32)

    def forward_cpu(self, bottom, top):
        ops.weighted_difference(bottom[0].data, bottom[1].data.reshape(bottom[0].shape),
                                self.difference)
        total = ops.dot(self.difference, self.difference)
        top[0].data[...] = total / bottom[0].shape[0] / 2

    def backward_cpu(self, top, propagate_down, bottom):
        for index, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[index]:
                alpha = np.float32(sign * top_weight(top) / bottom[index].shape[0])
                ops.scale_into(self.difference.reshape(bottom[index].shape), alpha,
                               bottom[index].diff)


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross-entropy of sigmoid(x) against targets in [0, 1], ignore_label supported."""

    def layer_setup(self, bottom, top):
        p = self.param.loss_param
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.mode = p.normalization if p.HasField("normalization") else (
            (_NORM.VALID if p.normalize else _NORM.BATCH_SIZE) if p.HasField("normalize")
            else _NORM.BATCH_SIZE)
        self.sigmoid = Blob()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise self.error(f"inputs and targets must have the same count: {bottom[0].shape} "
                             f"and {bottom[1].shape}")
        self.sigmoid.reshape(bottom[0].shape)
        self.terms = np.empty(bottom[0].shape, np.float32)
        # Without ignore_label every target counts: the mask stays all ones.
        self.kept = np.ones(bottom[0].shape, np.float32)

    def _kept(self, bottom):
        """The 0/1 mask of targets that count (recomputed only with an ignore_label)."""
        if self.ignore_label is not None:
            ops.pointwise("kept_target", self.kept, bottom[1].data.reshape(self.kept.shape),
                          ignore=self.ignore_label)
        return self.kept

    def forward_cpu(self, bottom, top):
        x = bottom[0].data
        ops.sigmoid_forward(x, self.sigmoid.data)
        ops.pointwise("sigmoid_cross_entropy", self.terms, x, bottom[1].data.reshape(x.shape))
        kept = self._kept(bottom)
        count = x.size if self.ignore_label is None else round(ops.dot(kept, kept))
        self.norm = self.normalizer(self.mode, x.shape[0], bottom[0].count_axes(1), count)
        top[0].data[...] = ops.dot(self.terms, kept) / self.norm

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot back-propagate to the targets")
        if propagate_down[0]:
            t = bottom[1].data.reshape(bottom[0].shape)
            scale = np.float32(top_weight(top) / self.norm)
            kept = None if self.ignore_label is None else self._kept(bottom)
            ops.weighted_difference(self.sigmoid.data, t, bottom[0].diff, scale, kept)


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge: sum_k max(0, 1 - d_k x_k) / N, d = +1 for the label and -1 else (L1),
    or the sum of its squares (L2)."""

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        one_label_per_sample(self, bottom)
        self.margins = np.empty((bottom[0].shape[0], bottom[0].count_axes(1)), np.float32)
        self.squared = self.param.hinge_loss_param.norm == _HINGE.L2

    def forward_cpu(self, bottom, top):
        scores = bottom[0].data.reshape(self.margins.shape)
        self.labels, _, _ = checked_labels(self, bottom[1], scores.shape[1])
        total = ops.hinge_margins(scores, self.labels, self.squared, self.margins)
        top[0].data[...] = total / scores.shape[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot back-propagate to the labels")
        if propagate_down[0]:
            scale = top_weight(top) / bottom[0].shape[0]
            ops.hinge_gradient(self.margins, self.labels, self.squared, scale,
                               bottom[0].diff.reshape(self.margins.shape))


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """-sum log(p[label]) / N over probabilities p (clipped at 1e-20)."""

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        one_label_per_sample(self, bottom)
        self.view = (bottom[0].shape[0], bottom[0].count_axes(1), 1)

    def forward_cpu(self, bottom, top):
        self.labels, self.weights, _ = checked_labels(self, bottom[1], self.view[1])
        loss = ops.label_log_loss(bottom[0].data.reshape(self.view), self.labels, self.weights,
                                  LOG_THRESHOLD)
        top[0].data[...] = loss / self.view[0]

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot back-propagate to the labels")
        if propagate_down[0]:
            ops.label_reciprocal_gradient(bottom[0].data.reshape(self.view), self.labels,
                                          self.weights, LOG_THRESHOLD,
                                          -top_weight(top) / self.view[0],
                                          bottom[0].diff.reshape(self.view))


@register_layer("InfogainLoss")
class InfogainLossLayer(LossLayer):
    """-sum_l H[label, l] log(softmax(x)_l), normalised; H from infogain_param.source
    (a BlobProto) or bottom 2.  As in Caffe since 2017, the softmax is taken here."""
    exact_bottoms = None
    min_bottoms = 2
    max_bottoms = 3
    max_tops = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def layer_setup(self, bottom, top):
        p = self.param.loss_param
        if p.HasField("normalize"):
            raise self.error("loss_param.normalize is deprecated here; use normalization")
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        self.mode = p.normalization
        self.prob = Blob()
        self.matrix = None
        if len(bottom) == 2:
            source = self.param.infogain_loss_param.source
            if not source:
                raise self.error("infogain_loss_param.source is required without a third bottom")
            try:
                self.matrix = proto_array(read_binary_proto(source, caffe_pb2.BlobProto()))
            except (OSError, CaffeError) as exc:
                raise self.error(f"cannot read the infogain matrix: {exc}") from exc

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis = bottom[0].canonical_axis(self.param.infogain_loss_param.axis)
        self.view = outer_channels_inner(bottom[0], self.axis)
        outer, classes, inner = self.view
        if outer * inner != bottom[1].count:
            raise self.error(f"{bottom[1].count} labels for {outer * inner} predictions "
                             f"(score shape {bottom[0].shape}, axis {self.axis})")
        matrix = self._matrix(bottom)
        if matrix.size != classes * classes:
            raise self.error(f"the infogain matrix has {matrix.size} values; {classes} classes "
                             f"need {classes}x{classes}")
        self.prob.reshape(bottom[0].shape)
        if len(top) == 2:
            top[1].reshape(bottom[0].shape)

    def _matrix(self, bottom):
        source = bottom[2].data if len(bottom) == 3 else self.matrix
        classes = self.view[1]
        return source.reshape(classes, -1) if source.size == classes * classes else source

    def forward_cpu(self, bottom, top):
        prob = self.prob.data.reshape(self.view)
        ops.softmax_forward(bottom[0].data.reshape(self.view), prob)
        self.labels, self.weights, valid = checked_labels(self, bottom[1], self.view[1],
                                                          self.ignore_label)
        loss = ops.infogain_loss(prob, self.labels, self.weights, self._matrix(bottom),
                                 LOG_THRESHOLD)
        self.norm = self.normalizer(self.mode, self.view[0], self.view[2], valid)
        top[0].data[...] = loss / self.norm
        if len(top) == 2:
            ops.copy_into(self.prob.data, top[1].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1] or (len(bottom) == 3 and propagate_down[2]):
            raise self.error("cannot back-propagate to the labels or the infogain matrix")
        if propagate_down[0]:
            ops.infogain_gradient(self.prob.data.reshape(self.view), self.labels, self.weights,
                                  self._matrix(bottom), top_weight(top) / self.norm,
                                  bottom[0].diff.reshape(self.view))


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Pairs (a, b) with similarity y: y d^2 + (1-y) max(margin - d, 0)^2, over 2N.

    legacy_version uses max(margin - d^2, 0) instead.  The backward is Caffe's,
    including its 1e-4 added to d in the dissimilar-pair term.
    """
    exact_bottoms = 3

    def allow_force_backward(self, bottom_index):
        return bottom_index < 2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].shape != bottom[1].shape or bottom[0].count_axes(2) != 1:
            raise self.error(f"needs two (N, C, 1, 1) bottoms of one shape, got "
                             f"{bottom[0].shape} and {bottom[1].shape}")
        if bottom[2].count != bottom[0].shape[0]:
            raise self.error(f"needs one similarity label per pair, got shape {bottom[2].shape}")
        self.difference = np.empty((bottom[0].shape[0], bottom[0].shape[1]), np.float32)
        self.dist_sq = np.empty(bottom[0].shape[0], np.float64)

    def forward_cpu(self, bottom, top):
        p = self.param.contrastive_loss_param
        num = bottom[0].shape[0]
        ops.weighted_difference(bottom[0].data.reshape(num, -1), bottom[1].data.reshape(num, -1),
                                self.difference)
        loss = ops.contrastive_loss(self.difference, bottom[2].data, p.margin,
                                    p.legacy_version, self.dist_sq)
        top[0].data[...] = loss / num / 2

    def backward_cpu(self, top, propagate_down, bottom):
        p = self.param.contrastive_loss_param
        num = bottom[0].shape[0]
        for index, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[index]:
                ops.contrastive_gradient(self.difference, bottom[2].data, self.dist_sq,
                                         p.margin, p.legacy_version,
                                         sign * top_weight(top) / num,
                                         bottom[index].diff.reshape(num, -1))
