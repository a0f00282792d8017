"""Every lr_policy's rate at several iterations, against the formulas in Caffe's docs."""
import math

import numpy as np
import pytest

from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.solvers.params import learning_rate

ITERATIONS = [0, 1, 7, 10, 25, 99]
BASE, GAMMA, POWER, STEPSIZE, MAX_ITER = 0.01, 0.5, 0.75, 10, 100


def param(policy, **extra):
    return caffe_pb2.SolverParameter(base_lr=BASE, lr_policy=policy, gamma=GAMMA, power=POWER,
                                     stepsize=STEPSIZE, max_iter=MAX_ITER, **extra)


EXPECTED = {
    "fixed": lambda it: BASE,
    "step": lambda it: BASE * GAMMA ** (it // STEPSIZE),
    "exp": lambda it: BASE * GAMMA ** it,
    "inv": lambda it: BASE * (1 + GAMMA * it) ** -POWER,
    "poly": lambda it: BASE * (1 - it / MAX_ITER) ** POWER,
    "sigmoid": lambda it: BASE / (1 + math.exp(-GAMMA * (it - STEPSIZE))),
}


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_policy_values(policy):
    p = param(policy)
    for it in ITERATIONS:
        rate, _ = learning_rate(p, it)
        assert rate.dtype == np.float32
        assert rate == pytest.approx(EXPECTED[policy](it), rel=1e-6, abs=1e-30), it


def test_step_policy_reports_its_step():
    assert learning_rate(param("step"), 25)[1] == 2


def test_multistep_advances_one_step_per_boundary():
    p = param("multistep", stepvalue=[3, 5, 20])
    step, rates = 0, []
    for it in range(25):
        rate, step = learning_rate(p, it, step)
        rates.append(float(rate))
    expected = [BASE * GAMMA ** sum(it >= v for v in (3, 5, 20)) for it in range(25)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert step == 3


def test_multistep_resumes_from_the_saved_step():
    p = param("multistep", stepvalue=[3, 5])
    rate, step = learning_rate(p, 10, current_step=2)
    assert step == 2 and rate == pytest.approx(BASE * GAMMA ** 2)
