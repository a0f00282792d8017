"""Layers of Mutual Calibration Training: ConfidenceMask and SoftTargetLoss.

The selection rules live in ``pycaffe_mct.mct.selection`` (pure
functions); these layers put them, and Hinton-style distillation, into a net.
Their passes over score arrays (label confidences, the distillation loss and
its gradient) run on the core group through ``cg.ops``; only the ranking of
the batch's confidences stays on the host.
"""
from ..cg import ops
from ..layer import Layer, register_layer
from ..mct import selection
from .softmax import LossLayer, checked_labels


def _as_rows(layer, blob, what):
    """A (batch, classes) view of a score/probability blob."""
    if blob.num_axes < 2:
        raise layer.error(f"{what} must have a class axis, got shape {blob.shape}")
    return blob.data.reshape(blob.shape[0], -1)


@register_layer("ConfidenceMask")
class ConfidenceMaskLayer(Layer):
    """0/1 sample masks for M_a and M_p from both models' probabilities (eqs. 1, 2).

    Bottoms: M_a's class probabilities, M_p's class probabilities (batch x
    classes), the given labels.  Tops: mask_a, mask_p (one value per sample).
    The ranking covers the batch the bottoms hold: the MCT trainer gathers both
    models' scores for the global batch on every rank first, so every rank
    selects the same samples as one process with the whole batch.
    """
    exact_bottoms = 3
    exact_tops = 2

    def layer_setup(self, bottom, top):
        p = self.param.confidence_mask_param
        try:
            selection.check_noise_rate(p.noise_rate)
        except Exception as exc:
            raise self.error(str(exc)) from None
        self.noise_rate = selection.proto_float(p.noise_rate)
        self.significance = selection.proto_float(p.significance)

    def reshape(self, bottom, top):
        if bottom[0].shape != bottom[1].shape:
            raise self.error(f"the two models' probabilities differ in shape: "
                             f"{bottom[0].shape} and {bottom[1].shape} (class counts differ?)")
        if bottom[2].count != bottom[0].shape[0]:
            raise self.error(f"{bottom[2].count} labels for a batch of {bottom[0].shape[0]}")
        for blob in top:
            blob.reshape((bottom[0].shape[0],))

    def forward_cpu(self, bottom, top):
        probs_a = _as_rows(self, bottom[0], "probabilities")
        labels, _, _ = checked_labels(self, bottom[2], probs_a.shape[1])
        confidence = ops.label_confidence(probs_a, _as_rows(self, bottom[1], "probabilities"),
                                          labels)
        mask_a, mask_p = selection.calibration_masks(confidence, self.noise_rate,
                                                     significance=self.significance)
        ops.copy_into(mask_a, top[0].data)
        ops.copy_into(mask_p, top[1].data)

    def allow_force_backward(self, bottom_index):
        return False


@register_layer("SoftTargetLoss")
class SoftTargetLossLayer(LossLayer):
    """Distillation loss of M_p against M_a's softened predictions and the labels.

    Bottoms: M_p's scores z_p, M_a's scores z_a (batch x classes, before the
    softmax), labels, optional per-sample weights w (M_p's selection mask).
    With temperature T and soft weight lambda::

        loss = (1 - lambda) * sum_i w_i * -log softmax(z_p)_i[y_i] / max(1, sum w)
             + lambda * T^2 * sum_i s_i * KL(softmax(z_a/T) || softmax(z_p/T)) / S

    where s = 1 and S = batch for soft_scope ALL, s = w and S = max(1, sum w)
    for WEIGHTED.  T^2 keeps the soft gradient's scale independent of T
    (Hinton et al. 2015).  Only z_p receives a gradient.
    """
    exact_bottoms = None
    min_bottoms = 3
    max_bottoms = 4
    max_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.soft_target_param
        if p.temperature <= 0:
            raise self.error(f"temperature must be positive, got {p.temperature}")
        if not 0.0 <= p.soft_weight <= 1.0:
            raise self.error(f"soft_weight must be in [0, 1], got {p.soft_weight}")
        self.temperature = float(p.temperature)
        self.soft_weight = float(p.soft_weight)
        self.weighted_soft = p.soft_scope == p.WEIGHTED

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].shape != bottom[1].shape:
            raise self.error(f"primary and auxiliary scores differ in shape: "
                             f"{bottom[0].shape} and {bottom[1].shape} (class counts differ?)")
        batch = bottom[0].shape[0]
        for index in range(2, len(bottom)):
            if bottom[index].count != batch:
                raise self.error(f"bottom {index} has {bottom[index].count} values for a "
                                 f"batch of {batch}")

    def _terms(self, bottom):
        """What forward and backward share: score rows, labels, weights, normalisers."""
        primary = _as_rows(self, bottom[0], "scores")
        labels, weights, total = checked_labels(
            self, bottom[2], primary.shape[1], weights=bottom[3].data if len(bottom) == 4 else None)
        hard_norm = self.valid_normalizer(total)
        soft_norm = hard_norm if self.weighted_soft else max(1.0, primary.shape[0])
        return primary, _as_rows(self, bottom[1], "scores"), labels, weights, hard_norm, soft_norm

    def forward_cpu(self, bottom, top):
        primary, aux, labels, weights, hard_norm, soft_norm = self._terms(bottom)
        hard, soft = ops.soft_target_loss(primary, aux, labels, weights, self.temperature,
                                          self.weighted_soft)
        top[0].data[...] = ((1.0 - self.soft_weight) * hard / hard_norm
                            + self.soft_weight * self.temperature ** 2 * soft / soft_norm)

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down[1:]):
            raise self.error("only the primary scores (bottom 0) take a gradient")
        if not propagate_down[0]:
            return
        primary, aux, labels, weights, hard_norm, soft_norm = self._terms(bottom)
        # d(T^2 KL)/dz_p = T * (softmax(z_p/T) - softmax(z_a/T))
        scale = top[0].diff.item()
        ops.soft_target_gradient(primary, aux, labels, weights, self.temperature,
                                 self.weighted_soft,
                                 scale * (1.0 - self.soft_weight) / hard_norm,
                                 scale * self.soft_weight * self.temperature / soft_norm,
                                 bottom[0].diff.reshape(primary.shape))
