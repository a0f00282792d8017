"""Normalisation layers: LRN, BatchNorm, MVN, with Caffe's formulas and defaults."""
import numpy as np

from ..blob import Blob
from ..cg import ops
from ..layer import Layer, TEST, register_layer
from ..proto import caffe_pb2

_LRN = caffe_pb2.LRNParameter


def channel_view(blob):
    """(N, C, S) view shape of a blob with at least one axis (S = product of the rest)."""
    shape = blob.shape
    return (shape[0], shape[1] if len(shape) > 1 else 1, blob.count_axes(2))


@register_layer("LRN")
class LRNLayer(Layer):
    """Local response normalisation.

    ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum_window x^2)^-beta`` over n
    neighbouring channels.  WITHIN_CHANNEL follows Caffe's composite of layers:
    ``y = x * (1 + alpha * avgpool_n(x^2))^-beta``, where the n x n average
    pooling (pad (n-1)/2) counts padded cells in its divisor and ``k`` is unused.
    """
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.lrn_param
        self.size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        if self.size <= 0 or self.size % 2 == 0:
            raise self.error(f"local_size {self.size} must be a positive odd number")
        self.region = p.norm_region
        self.scale = Blob()

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise self.error(f"needs a 4-axis (N, C, H, W) bottom, got {bottom[0].shape}")
        if top[0] is bottom[0]:
            raise self.error("cannot work in place")
        top[0].reshape(bottom[0].shape)
        self.scale.reshape(bottom[0].shape)

    def forward_cpu(self, bottom, top):
        x, y, scale = bottom[0].data, top[0].data, self.scale.data
        if self.region == _LRN.ACROSS_CHANNELS:
            view = channel_view(bottom[0])
            ops.lrn_across_forward(x.reshape(view), self.size, self.alpha, self.beta, self.k,
                                   scale.reshape(view), y.reshape(view))
        else:
            ops.lrn_within_forward(x, self.size, self.alpha, self.beta, scale, y)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, y, dy, scale = bottom[0].data, top[0].data, top[0].diff, self.scale.data
        dx = bottom[0].diff
        if self.region == _LRN.ACROSS_CHANNELS:
            view = channel_view(bottom[0])
            ops.lrn_across_backward(x.reshape(view), y.reshape(view), scale.reshape(view),
                                    dy.reshape(view), self.size, self.alpha, self.beta,
                                    dx.reshape(view))
        else:
            ops.lrn_within_backward(x, y, scale, dy, self.size, self.alpha, self.beta, dx)


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """Caffe's BatchNorm: normalisation only (a Scale layer learns the affine part).

    Blobs: running sum of means, running sum of variances, and the scale factor
    ``s``; the statistics used in TEST are ``blob / s``.  Each TRAIN forward
    decays all three by ``moving_average_fraction`` and adds the batch mean, the
    batch variance times m/(m-1) (m values per channel) and 1.  The blobs are
    not learned: like Caffe, set-up gives them lr_mult 0.
    """
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.batch_norm_param
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == TEST)
        self.fraction = p.moving_average_fraction
        self.eps = p.eps
        self.channels = channel_view(bottom[0])[1]
        self.blobs = [Blob((self.channels,)), Blob((self.channels,)), Blob((1,))]
        for index in range(3):
            if index == len(self.param.param):
                self.param.param.add(lr_mult=0.0)
            elif self.param.param[index].lr_mult != 0:
                raise self.error(f"param {index} has lr_mult {self.param.param[index].lr_mult}; "
                                 f"batch normalisation statistics cannot be learned")
        self.normalized = Blob()

    def reshape(self, bottom, top):
        view = channel_view(bottom[0])
        if view[1] != self.channels:
            raise self.error(f"bottom shape {bottom[0].shape} has {view[1]} channels, "
                             f"the statistics {self.channels}")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)
        if not self.use_global_stats:
            self.normalized.reshape(bottom[0].shape)
        self.view = view

    def stored_statistics(self):
        """The mean and variance TEST uses: the running sums divided by the scale factor
        (a factor of 0, as before any TRAIN forward, gives zeros, as in Caffe)."""
        factor = self.blobs[2].data[0]
        factor = 0.0 if factor == 0 else 1.0 / factor
        return (self.blobs[0].data * np.float32(factor),
                self.blobs[1].data * np.float32(factor))

    def _statistics(self, x):
        if self.use_global_stats:
            return self.stored_statistics()
        mean, var = ops.channel_mean_var(x)
        per_channel = self.view[0] * self.view[2]
        correction = per_channel / (per_channel - 1.0) if per_channel > 1 else 1.0
        fraction = np.float32(self.fraction)
        for blob, value in ((self.blobs[0], mean), (self.blobs[1], var * np.float32(correction))):
            blob.data[...] *= fraction
            blob.data[...] += value
        self.blobs[2].data[0] = self.blobs[2].data[0] * fraction + 1
        return mean, var

    def normalization(self, x):
        """(coeff, shift), per channel, of y = (x - mean) / std as one affine map of x viewed
        (N, C, S); in TRAIN this takes the batch's statistics and updates the running ones."""
        mean, var = self._statistics(x)
        self.inv_std = np.float32(1) / np.sqrt(var + np.float32(self.eps))
        return self.inv_std, -mean * self.inv_std

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.view)
        coeff, shift = self.normalization(x)
        ops.channel_linear([(x, coeff)], top[0].data.reshape(self.view), shift=shift)
        if not self.use_global_stats:
            # Kept for backward: the top may be changed in place by the next layer.
            ops.copy_into(top[0].data, self.normalized.data)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.view)
        dx = bottom[0].diff.reshape(self.view)
        if self.use_global_stats:
            ops.channel_linear([(dy, self.inv_std)], dx)
            return
        y = self.normalized.data.reshape(self.view)
        sum_dy, sum_dy_y = ops.channel_sums(dy, y)
        per_channel = np.float32(self.view[0] * self.view[2])
        # dx = (dy - mean(dy) - y * mean(dy * y)) / std; dx may alias dy (the first term).
        ops.channel_linear([(dy, self.inv_std), (y, -sum_dy_y / per_channel * self.inv_std)],
                           dx, shift=-sum_dy / per_channel * self.inv_std)


@register_layer("MVN")
class MVNLayer(Layer):
    """Mean-variance normalisation per sample (and per channel unless across_channels).

    As in Caffe, ``y = (x - mean) / (sqrt(var) + eps)`` with the biased variance
    ``var`` of each row.
    """
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.mvn_param
        self.normalize_variance, self.across_channels, self.eps = (
            p.normalize_variance, p.across_channels, p.eps)

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)
        rows = bottom[0].shape[0] if self.across_channels else bottom[0].count_axes(0, 2)
        self.view = (rows, bottom[0].count // max(rows, 1))

    def forward_cpu(self, bottom, top):
        x = bottom[0].data.reshape(self.view)
        y = top[0].data.reshape(self.view)
        rows = self.view[0]
        if self.normalize_variance:
            # Two-pass per-row mean and variance: E[x^2] - E[x]^2 without its cancellation.
            mean, var = ops.channel_mean_var(x.reshape(1, *self.view))
            self.divisor = np.sqrt(var) + np.float32(self.eps)
        else:
            mean = np.empty(rows, np.float32)
            ops.row_reduce(x, "mean", 1.0, mean)
            self.divisor = np.ones(rows, np.float32)
        ops.normalize_rows(x, mean, self.divisor, y)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        view = (1, *self.view)                  # rows as channels of one sample
        dy = top[0].diff.reshape(view)
        dx = bottom[0].diff.reshape(view)
        inverse = np.float32(1) / self.divisor
        length = np.float32(self.view[1])
        if self.normalize_variance:
            # dx = (dy - mean(dy) - y * mean(dy * y)) / divisor; dx may alias dy.
            y = top[0].data.reshape(view)
            sum_dy, sum_dy_y = ops.channel_sums(dy, y)
            ops.channel_linear([(dy, inverse), (y, -sum_dy_y / length * inverse)], dx,
                               shift=-sum_dy / length * inverse)
        else:
            mean_dy = np.empty(self.view[0], np.float32)
            ops.row_reduce(dy.reshape(self.view), "mean", 1.0, mean_dy)
            ops.channel_linear([(dy, 1.0)], dx, shift=-mean_dy)
