"""Layers whose output is (a lookup into) a learned blob: Parameter, Embed."""
import numpy as np

from ..blob import Blob
from ..cg import ops
from ..fillers import weight_and_bias
from ..layer import Layer, register_layer


@register_layer("Parameter")
class ParameterLayer(Layer):
    """Outputs its one blob (zeros initially, of parameter_param.shape); top shares it."""
    exact_bottoms = 0
    exact_tops = 1

    def layer_setup(self, bottom, top):
        self.blobs = [Blob(tuple(self.param.parameter_param.shape.dim))]

    def reshape(self, bottom, top):
        top[0].view_of(self.blobs[0], self.blobs[0].shape)

    def forward_cpu(self, bottom, top):
        """The top is the blob itself."""

    def backward_cpu(self, top, propagate_down, bottom):
        """The blob's diff is the top's diff."""


@register_layer("Embed")
class EmbedLayer(Layer):
    """Row lookup: each bottom value i in [0, input_dim) selects row i of a
    (input_dim, num_output) weight, plus the bias; the top gains an axis of
    num_output.  Indices get no gradient."""
    exact_bottoms = 1
    exact_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.embed_param
        self.num_output, self.input_dim, self.bias_term = p.num_output, p.input_dim, p.bias_term
        if self.num_output <= 0 or self.input_dim <= 0:
            raise self.error(f"num_output {self.num_output} and input_dim {self.input_dim} "
                             f"must be positive")
        self.blobs = weight_and_bias((self.input_dim, self.num_output), p.weight_filler,
                                     self.num_output if self.bias_term else 0, p.bias_filler)

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom):
        values = bottom[0].data.reshape(-1)
        indices = values.astype(np.int64)
        bad = (indices < 0) | (indices >= self.input_dim) | (indices != values)
        if bad.any():
            raise self.error(f"index {values[bad][0]} is not an integer in [0, {self.input_dim})")
        return indices

    def forward_cpu(self, bottom, top):
        ops.embed_forward(self.blobs[0].data, self._indices(bottom),
                          self.blobs[1].data if self.bias_term else None,
                          top[0].data.reshape(-1, self.num_output))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise self.error("cannot back-propagate to the indices")
        dy = top[0].diff.reshape(-1, self.num_output)
        if self.param_propagate_down[0]:
            ops.embed_accumulate_weight_grad(dy, self._indices(bottom), self.blobs[0].diff)
        if self.bias_term and self.param_propagate_down[1]:
            ops.accumulate_channel_bias_grad(dy.reshape(-1, self.num_output, 1),
                                             self.blobs[1].diff)
