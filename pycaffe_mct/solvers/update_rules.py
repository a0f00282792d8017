"""The six solver types: each turns a regularised gradient into the step to subtract.

They follow Caffe's sgd_solver.cpp, nesterov_solver.cpp, adagrad_solver.cpp,
rmsprop_solver.cpp, adadelta_solver.cpp and adam_solver.cpp operation by
operation, in float32, and keep the same history blobs, so a Caffe
``.solverstate`` resumes here and ours in Caffe.  ``g`` is the parameter's
gradient (``blob.diff``, overwritten by the step), ``h`` its history,
``lr`` the learning rate times the parameter's ``lr_mult``.
"""
import math

import numpy as np

from ..errors import CaffeError
from .params import field_line
from .solver import Solver, register_solver

f32 = np.float32


@register_solver("SGD")
class SGDSolver(Solver):
    """Momentum SGD: h = lr * g + momentum * h; step = h."""

    def compute_update(self, index, blob, rate):
        g, h = blob.diff, self.history[index]
        h *= f32(self.param.momentum)
        h += self.local_rate(index, rate) * g
        g[...] = h


@register_solver("Nesterov")
class NesterovSolver(Solver):
    """Nesterov momentum: h' = lr * g + m * h; step = (1 + m) * h' - m * h."""

    def compute_update(self, index, blob, rate):
        g, h = blob.diff, self.history[index]
        momentum = f32(self.param.momentum)
        previous = h.copy()
        h *= momentum
        h += self.local_rate(index, rate) * g
        g[...] = (f32(1) + momentum) * h - momentum * previous


def _require_no_momentum(cls, param, source):
    if param.momentum != 0:
        raise CaffeError(f"{field_line(source, 'momentum')}: momentum cannot be used with "
                         f"{cls.type_name}")


def _decay_into(average, value, decay):
    """average = decay * average + (1 - decay) * value, in place (Caffe's axpby)."""
    decay = f32(decay)
    average *= decay
    average += (f32(1) - decay) * value


def _divide_by_rms(g, accumulated, delta):
    """g / (sqrt(accumulated) + delta), the AdaGrad/RMSProp normalisation."""
    return g / (np.sqrt(accumulated) + f32(delta))


@register_solver("AdaGrad")
class AdaGradSolver(Solver):
    """h += g^2; step = lr * g / (sqrt(h) + delta)."""

    @classmethod
    def check_param(cls, param, source):
        _require_no_momentum(cls, param, source)

    def compute_update(self, index, blob, rate):
        g, h = blob.diff, self.history[index]
        h += g * g
        g[...] = self.local_rate(index, rate) * _divide_by_rms(g, h, self.param.delta)


@register_solver("RMSProp")
class RMSPropSolver(Solver):
    """h = (1 - d) g^2 + d h; step = lr * g / (sqrt(h) + delta)."""

    @classmethod
    def check_param(cls, param, source):
        _require_no_momentum(cls, param, source)
        if not 0 <= param.rms_decay < 1:
            raise CaffeError(f"{field_line(source, 'rms_decay')}: rms_decay must be in "
                             f"[0, 1), got {param.rms_decay:g}")

    def compute_update(self, index, blob, rate):
        g, h = blob.diff, self.history[index]
        _decay_into(h, g * g, self.param.rms_decay)
        g[...] = self.local_rate(index, rate) * _divide_by_rms(g, h, self.param.delta)


@register_solver("AdaDelta")
class AdaDeltaSolver(Solver):
    """Zeiler's AdaDelta: h_g and h_u are running means of g^2 and of step^2;
    step = lr * g * sqrt((h_u + delta) / (h_g + delta)), h_u updated after."""

    history_sets = 2

    def compute_update(self, index, blob, rate):
        g = blob.diff
        grad_history, step_history = self.history_pair(index)
        delta = f32(self.param.delta)
        _decay_into(grad_history, g * g, self.param.momentum)
        g *= np.sqrt((step_history + delta) / (grad_history + delta))
        _decay_into(step_history, g * g, self.param.momentum)
        g *= self.local_rate(index, rate)


@register_solver("Adam")
class AdamSolver(Solver):
    """Kingma & Ba: m and v are running means of g and g^2 (betas momentum and
    momentum2); step = lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta)."""

    history_sets = 2

    def compute_update(self, index, blob, rate):
        g = blob.diff
        m, v = self.history_pair(index)
        beta1, beta2 = float(f32(self.param.momentum)), float(f32(self.param.momentum2))
        t = self.iter + 1
        correction = f32(math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
        _decay_into(m, g, beta1)
        _decay_into(v, g * g, beta2)
        scaled_rate = self.local_rate(index, rate) * correction
        g[...] = scaled_rate * (m / (np.sqrt(v) + f32(self.param.delta)))
