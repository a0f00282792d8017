"""Element-wise layers (Caffe's NeuronLayer family): one bottom, one top, in place allowed."""
import numpy as np

from .. import rng
from ..cg import ops
from ..layer import Layer, TRAIN, register_layer


class NeuronLayer(Layer):
    """Shape-preserving element-wise layers; top may be the bottom itself."""
    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)


@register_layer("ReLU")
class ReLULayer(NeuronLayer):
    """max(x, 0) + negative_slope * min(x, 0)."""

    def forward_cpu(self, bottom, top):
        ops.relu_forward(bottom[0].data, self.param.relu_param.negative_slope, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            # In place, bottom data holds the output, whose sign matches the input's.
            ops.relu_backward(bottom[0].data, top[0].diff,
                              self.param.relu_param.negative_slope, bottom[0].diff)


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    def forward_cpu(self, bottom, top):
        ops.sigmoid_forward(bottom[0].data, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.sigmoid_backward(top[0].data, top[0].diff, bottom[0].diff)


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    def forward_cpu(self, bottom, top):
        ops.tanh_forward(bottom[0].data, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.tanh_backward(top[0].data, top[0].diff, bottom[0].diff)


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    """Zero a random dropout_ratio of the inputs in TRAIN, scaling survivors by 1/(1-ratio)."""

    def layer_setup(self, bottom, top):
        self.ratio = self.param.dropout_param.dropout_ratio
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio {self.ratio} is outside [0, 1)")
        self.scale = 1.0 / (1.0 - self.ratio)
        self.mask = None

    def forward_cpu(self, bottom, top):
        if self.phase == TRAIN:
            # The uniform draws come from the host's generator; the mask is made on the CG.
            self.mask = rng.generator().random(bottom[0].shape, dtype=np.float32)
            ops.pointwise("dropout_mask", self.mask, self.mask, ratio=np.float32(self.ratio),
                          scale=np.float32(self.scale))
            ops.scale_into(bottom[0].data, self.mask, top[0].data)
        elif top[0] is not bottom[0]:
            ops.copy_into(bottom[0].data, top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.phase == TRAIN:
            ops.scale_into(top[0].diff, self.mask, bottom[0].diff)
        elif top[0] is not bottom[0]:
            ops.copy_into(top[0].diff, bottom[0].diff)
