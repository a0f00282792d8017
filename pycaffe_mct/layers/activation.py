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
        x = bottom[0].data.reshape(self.view)
        np.add(np.maximum(x, 0), self._slopes() * np.minimum(x, 0),
               out=top[0].data.reshape(self.view))

    def backward_cpu(self, top, propagate_down, bottom):
        x = self.input_data(bottom, top).reshape(self.view)
        dy = top[0].diff.reshape(self.view)
        if self.param_propagate_down[0]:
            grad = (dy * x * (x <= 0)).sum(axis=(0, 2), dtype=np.float64)
            self.blobs[0].diff[...] += grad.sum() if self.channel_shared else grad
        if propagate_down[0]:
            np.multiply(dy, np.where(x > 0, _F(1), self._slopes()),
                        out=bottom[0].diff.reshape(self.view))


@register_layer("ELU")
class ELULayer(NeuronLayer):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""

    def forward_cpu(self, bottom, top):
        alpha = _F(self.param.elu_param.alpha)
        x = bottom[0].data
        np.copyto(top[0].data, np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            alpha = _F(self.param.elu_param.alpha)
            y = top[0].data   # its sign is the input's, so in place works
            np.multiply(top[0].diff, np.where(y > 0, _F(1), y + alpha), out=bottom[0].diff)


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    """y = |x|; dy/dx = sign(x) (0 at 0)."""

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise self.error("cannot work in place")
        super().reshape(bottom, top)

    def forward_cpu(self, bottom, top):
        np.abs(bottom[0].data, out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            np.multiply(top[0].diff, np.sign(bottom[0].data), out=bottom[0].diff)


class AffineInputLayer(InputKeepingLayer):
    """Shared by Power, Exp, Log: they act on u = shift + scale * x."""
    param_field = None

    def affine(self, x):
        p = getattr(self.param, self.param_field)
        return _F(p.shift) + _F(p.scale) * x


@register_layer("Power")
class PowerLayer(AffineInputLayer):
    """y = (shift + scale * x) ^ power."""
    param_field = "power_param"

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        np.power(self.affine(bottom[0].data), _F(self.param.power_param.power),
                 out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        p = self.param.power_param
        u = self.affine(self.input_data(bottom, top))
        slope = _F(p.power * p.scale) * (u ** _F(p.power - 1) if p.power != 1 else _F(1))
        np.multiply(top[0].diff, slope, out=bottom[0].diff)


def log_base(base):
    """ln(base), with Caffe's base -1 meaning e."""
    return 1.0 if base == -1 else math.log(base)


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    """y = base ^ (shift + scale * x), base e when -1."""

    def forward_cpu(self, bottom, top):
        p = self.param.exp_param
        rate = log_base(p.base)
        np.exp(_F(rate * p.shift) + _F(rate * p.scale) * bottom[0].data, out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.exp_param
            np.multiply(top[0].diff, top[0].data * _F(log_base(p.base) * p.scale),
                        out=bottom[0].diff)


@register_layer("Log")
class LogLayer(AffineInputLayer):
    """y = log_base(shift + scale * x), base e when -1."""
    param_field = "log_param"

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        np.multiply(np.log(self.affine(bottom[0].data)),
                    _F(1.0 / log_base(self.param.log_param.base)), out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.log_param
            u = self.affine(self.input_data(bottom, top))
            np.multiply(top[0].diff, _F(p.scale / log_base(p.base)) / u, out=bottom[0].diff)


@register_layer("BNLL")
class BNLLLayer(InputKeepingLayer):
    """y = log(1 + exp(x)), computed without overflow; dy/dx = sigmoid(x)."""

    def forward_cpu(self, bottom, top):
        self.keep_input(bottom, top)
        x = bottom[0].data
        np.add(np.maximum(x, 0), np.log1p(np.exp(-np.abs(x))), out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            sigmoid = np.empty_like(top[0].diff)
            ops.sigmoid_forward(self.input_data(bottom, top), sigmoid)
            ops.product_into([top[0].diff, sigmoid], bottom[0].diff)


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    """y = 1 if x > threshold else 0; no gradient (as in Caffe)."""

    def forward_cpu(self, bottom, top):
        np.greater(bottom[0].data, _F(self.param.threshold_param.threshold), out=top[0].data,
                   casting="unsafe")

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
        np.clip(bottom[0].data, _F(p.min), _F(p.max), out=top[0].data)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.param.clip_param
            x = self.input_data(bottom, top)
            np.multiply(top[0].diff, (x >= _F(p.min)) & (x <= _F(p.max)), out=bottom[0].diff)


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
            y, s = top[0].data, self.sigmoid.data
            np.multiply(top[0].diff, beta * y + s * (1 - beta * y), out=bottom[0].diff)
