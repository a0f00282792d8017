"""More element-wise layers: PReLU, ELU, AbsVal, Power, Exp, Log, BNLL, Threshold, Clip, Swish.

Formulas and defaults are Caffe's.  Layers whose backward needs the input and
may run in place keep a copy of it, as Caffe does.
"""
import math

import numpy as np

from ..blob import Blob
from ..cg import ops
from ..fillers import fill
from ..layer import register_layer
from .neuron import NeuronLayer

_F = np.float32


class InputKeepingLayer(NeuronLayer):
    """A neuron layer whose backward reads its input: copied first when in place."""

    def layer_setup(self, bottom, top):
        self.saved_input = Blob()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if top[0] is bottom[0]:
            self.saved_input.reshape(bottom[0].shape)

    def keep_input(self, bottom, top):
        if top[0] is bottom[0]:
            ops.copy_into(bottom[0].data, self.saved_input.data)

    def input_data(self, bottom, top):
        return self.saved_input.data if top[0] is bottom[0] else bottom[0].data


@register_layer("PReLU")
class PReLULayer(InputKeepingLayer):
    """y = max(x, 0) + a_c * min(x, 0), a per channel (axis 1) or one shared; a starts at 0.25."""

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        p = self.param.prelu_param
        if bottom[0].num_axes < 2:
            raise self.error(f"needs a bottom with a channel axis, got shape {bottom[0].shape}")
        self.channel_shared = p.channel_shared
        slope = Blob((1,) if self.channel_shared else (bottom[0].shape[1],))
        if p.HasField("filler"):
            fill(slope, p.filler)
        else:
            slope.data[...] = 0.25
        self.blobs = [slope]

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        channels = bottom[0].shape[1]
        if not self.channel_shared and channels != self.blobs[0].count:
            raise self.error(f"bottom shape {bottom[0].shape} has {channels} channels, the "
                             f"slopes {self.blobs[0].count}")
        self.view = (bottom[0].shape[0], channels, bottom[0].count_axes(2))

    def _slopes(self):
        return self.blobs[0].data.reshape(1, -1, 1)

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        ops.pointwise("prelu", top[0].data.reshape(self.view),
                      bottom[0].data.reshape(self.view), self._slopes())

    def backward_cpu(self, top, propagate_down, bottom):
        x = self.input_data(bottom, top).reshape(self.view)
        dy = top[0].diff.reshape(self.view)
        if self.param_propagate_down[0]:
            negative = np.empty(self.view, np.float32)
            ops.pointwise("negative_part", negative, x)
            grad = ops.channel_sums(dy, negative)[1]
            self.blobs[0].diff[...] += grad.sum(dtype=np.float64) if self.channel_shared else grad
        if propagate_down[0]:
            ops.pointwise("prelu_backward", bottom[0].diff.reshape(self.view), x,
                          self._slopes(), dy)


@register_layer("ELU")
class ELULayer(NeuronLayer):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""

    def forward_cpu(self, bottom, top):
        ops.pointwise("elu", top[0].data, bottom[0].data, alpha=_F(self.param.elu_param.alpha))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            # The output's sign is the input's, so in place works.
            ops.pointwise("elu_backward", bottom[0].diff, top[0].data, top[0].diff,
                          alpha=_F(self.param.elu_param.alpha))


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    """y = |x|; dy/dx = sign(x) (0 at 0)."""

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise self.error("cannot work in place")
        super().reshape(bottom, top)

    def forward_cpu(self, bottom, top):
        ops.pointwise("abs", top[0].data, bottom[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            ops.pointwise("abs_backward", bottom[0].diff, bottom[0].data, top[0].diff)


class AffineInputLayer(InputKeepingLayer):
    """Shared by Power, Exp, Log: they act on u = shift + scale * x."""
    param_field = None

    def affine(self):
        """The shift and scale as ``ops.pointwise`` constants."""
        p = getattr(self.param, self.param_field)
        return dict(shift=_F(p.shift), scale=_F(p.scale))


@register_layer("Power")
class PowerLayer(AffineInputLayer):
    """y = (shift + scale * x) ^ power."""
    param_field = "power_param"

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        ops.pointwise("power", top[0].data, bottom[0].data, power=_F(self.param.power_param.power),
                      **self.affine())

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        p = self.param.power_param
        ops.pointwise("power_backward", bottom[0].diff, self.input_data(bottom, top),
                      top[0].diff, gain=_F(p.power * p.scale), exponent=_F(p.power - 1),
                      **self.affine())


def log_base(base):
    """ln(base), with Caffe's base -1 meaning e."""
    return 1.0 if base == -1 else math.log(base)


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    """y = base ^ (shift + scale * x), base e when -1."""

    def forward_cpu(self, bottom, top):
        p = self.param.exp_param
        rate = log_base(p.base)
        ops.pointwise("exp", top[0].data, bottom[0].data, shift=_F(rate * p.shift),
                      scale=_F(rate * p.scale))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.exp_param
            ops.pointwise("exp_backward", bottom[0].diff, top[0].data, top[0].diff,
                          scale=_F(log_base(p.base) * p.scale))


@register_layer("Log")
class LogLayer(AffineInputLayer):
    """y = log_base(shift + scale * x), base e when -1."""
    param_field = "log_param"

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        ops.pointwise("log", top[0].data, bottom[0].data,
                      factor=_F(1.0 / log_base(self.param.log_param.base)), **self.affine())

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.log_param
            ops.pointwise("log_backward", bottom[0].diff, self.input_data(bottom, top),
                          top[0].diff, factor=_F(p.scale / log_base(p.base)), **self.affine())


@register_layer("BNLL")
class BNLLLayer(InputKeepingLayer):
    """y = log(1 + exp(x)), computed without overflow; dy/dx = sigmoid(x)."""

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        ops.pointwise("bnll", top[0].data, bottom[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            sigmoid = np.empty_like(top[0].diff)
            ops.sigmoid_forward(self.input_data(bottom, top), sigmoid)
            ops.product_into([top[0].diff, sigmoid], bottom[0].diff)


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    """y = 1 if x > threshold else 0; no gradient (as in Caffe)."""

    def forward_cpu(self, bottom, top):
        ops.pointwise("threshold", top[0].data, bottom[0].data,
                      threshold=_F(self.param.threshold_param.threshold))

    def allow_force_backward(self, bottom_index):
        return False

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise self.error("has no gradient (Caffe's Threshold backward is not implemented)")


@register_layer("Clip")
class ClipLayer(InputKeepingLayer):
    """y = min(max(x, min), max); the gradient passes where min <= x <= max."""

    def forward_cpu(self, bottom, top):
        p = self.param.clip_param
        if p.min > p.max:
            raise self.error(f"min {p.min} is larger than max {p.max}")
        self.keep_input(bottom, top)
        ops.pointwise("clip", top[0].data, bottom[0].data, low=_F(p.min), high=_F(p.max))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.clip_param
            ops.pointwise("clip_backward", bottom[0].diff, self.input_data(bottom, top),
                          top[0].diff, low=_F(p.min), high=_F(p.max))


@register_layer("Swish")
class SwishLayer(NeuronLayer):
    """y = x * sigmoid(beta * x); dy/dx = beta*y + sigmoid(beta*x) * (1 - beta*y)."""

    def layer_setup(self, bottom, top):
        self.sigmoid = Blob()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.sigmoid.reshape(bottom[0].shape)

    def forward_cpu(self, bottom, top):
        ops.scale_into(bottom[0].data, _F(self.param.swish_param.beta), self.sigmoid.data)
        ops.sigmoid_forward(self.sigmoid.data, self.sigmoid.data)
        ops.product_into([bottom[0].data, self.sigmoid.data], top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            beta = _F(self.param.swish_param.beta)
            ops.pointwise("swish_backward", bottom[0].diff, top[0].data, self.sigmoid.data,
                          top[0].diff, beta=beta)
