"""Every solver type's update against the same update computed by hand here (float64)."""
import numpy as np
import pytest

from pycaffe_mct.solvers import SGDSolver, solver_types
from solver_helpers import CONSTANT_NET, quiet_solver, weights_of, write_solver


def hand_sgd(g, state, lr, f, t):
    state["h"] = f["momentum"] * state.get("h", 0.0) + lr * g
    return state["h"]


def hand_nesterov(g, state, lr, f, t):
    previous = state.get("h", 0.0)
    state["h"] = f["momentum"] * previous + lr * g
    return (1 + f["momentum"]) * state["h"] - f["momentum"] * previous


def hand_adagrad(g, state, lr, f, t):
    state["sq"] = state.get("sq", 0.0) + g ** 2
    return lr * g / (np.sqrt(state["sq"]) + f["delta"])


def hand_rmsprop(g, state, lr, f, t):
    d = f["rms_decay"]
    state["sq"] = d * state.get("sq", 0.0) + (1 - d) * g ** 2
    return lr * g / (np.sqrt(state["sq"]) + f["delta"])


def hand_adadelta(g, state, lr, f, t):
    m, delta = f["momentum"], f["delta"]
    state["g2"] = m * state.get("g2", 0.0) + (1 - m) * g ** 2
    raw = g * np.sqrt((state.get("u2", 0.0) + delta) / (state["g2"] + delta))
    state["u2"] = m * state.get("u2", 0.0) + (1 - m) * raw ** 2
    return lr * raw


def hand_adam(g, state, lr, f, t):
    b1, b2 = f["momentum"], f["momentum2"]
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g ** 2
    corrected_lr = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return corrected_lr * state["m"] / (np.sqrt(state["v"]) + f["delta"])


CASES = {
    "SGD": (hand_sgd, {"momentum": 0.9}),
    "Nesterov": (hand_nesterov, {"momentum": 0.9}),
    "AdaGrad": (hand_adagrad, {"delta": 1e-6}),
    "RMSProp": (hand_rmsprop, {"rms_decay": 0.9, "delta": 1e-6}),
    "AdaDelta": (hand_adadelta, {"momentum": 0.95, "delta": 1e-6}),
    "Adam": (hand_adam, {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8}),
}
LR_MULTS, DECAY_MULTS = [1, 2, 1, 1], [1, 0, 1, 1]   # as CONSTANT_NET declares them


def test_every_registered_type_has_a_case():
    assert sorted(CASES) == solver_types()


@pytest.mark.parametrize("regularization,iter_size", [("L2", 1), ("L1", 2)])
@pytest.mark.parametrize("solver_type", sorted(CASES))
def test_update_matches_hand_computation(tmp_path, solver_type, regularization, iter_size):
    hand, fields = CASES[solver_type]
    base_lr, decay = 0.05, 0.01
    path = write_solver(tmp_path, CONSTANT_NET, type=f'"{solver_type}"', base_lr=base_lr,
                        weight_decay=decay, regularization_type=f'"{regularization}"',
                        iter_size=iter_size, **fields)
    solver, _ = quiet_solver(path)
    assert [p.lr_mult for p in solver.net.learnables] == LR_MULTS
    assert [p.decay_mult for p in solver.net.learnables] == DECAY_MULTS
    draw = np.random.default_rng(0)
    expected = [w.astype(np.float64) for w in weights_of(solver.net)]
    states = [{} for _ in expected]
    for t in (1, 2, 3):
        grads = [draw.normal(0, 1, w.shape) for w in expected]
        for blob, g in zip(solver.net.learnable_params, grads):
            blob.diff[...] = g
        solver.apply_update()
        for i, g in enumerate(grads):
            w = expected[i]
            penalty = w if regularization == "L2" else np.sign(w)
            g_eff = g / iter_size + decay * DECAY_MULTS[i] * penalty
            expected[i] = w - hand(g_eff, states[i], base_lr * LR_MULTS[i], fields, t)
        for got, want in zip(weights_of(solver.net), expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert solver.iter == 3


def test_clipping_scales_the_joint_gradient_norm(tmp_path):
    path = write_solver(tmp_path, CONSTANT_NET, base_lr=1.0, clip_gradients=0.5)
    solver, log = quiet_solver(path)
    before = weights_of(solver.net)
    grads = [np.full(w.shape, 3.0) for w in before]
    for blob, g in zip(solver.net.learnable_params, grads):
        blob.diff[...] = g
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    solver.apply_update()
    for w0, w1, g, lr_mult in zip(before, weights_of(solver.net), grads, LR_MULTS):
        np.testing.assert_allclose(w0 - w1, lr_mult * g * 0.5 / norm, rtol=1e-5)
    assert "Gradient clipping: scaling down gradients (L2 norm" in log.getvalue()


def test_no_clipping_below_the_threshold(tmp_path):
    path = write_solver(tmp_path, CONSTANT_NET, base_lr=1.0, clip_gradients=100)
    solver, log = quiet_solver(path)
    before = weights_of(solver.net)
    for blob in solver.net.learnable_params:
        blob.diff[...] = 0.01
    solver.apply_update()
    for w0, w1, lr_mult in zip(before, weights_of(solver.net), LR_MULTS):
        np.testing.assert_allclose(w0 - w1, lr_mult * 0.01, rtol=1e-5)
    assert "Gradient clipping" not in log.getvalue()


def _train_with_iter_size(tmp_path, iter_size):
    tmp_path.mkdir()
    path = write_solver(tmp_path, CONSTANT_NET, type='"SGD"', momentum=0.9,
                        iter_size=iter_size, weight_decay=0.001)
    solver, _ = quiet_solver(path)
    seen = []
    solver.add_callback(lambda: None,
                        lambda: seen.append(solver.net.learnable_params[0].diff.copy()))
    solver.step(3)
    return weights_of(solver.net), seen


def test_iter_size_accumulates_then_normalises(tmp_path):
    once, diffs_once = _train_with_iter_size(tmp_path / "a", 1)
    twice, diffs_twice = _train_with_iter_size(tmp_path / "b", 2)
    # The callback sees the sum over the passes; the update sees their mean.
    np.testing.assert_allclose(diffs_twice[0], 2 * diffs_once[0], rtol=1e-6)
    for a, b in zip(once, twice):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("solver_type,fields,message", [
    ("AdaGrad", {"momentum": 0.9}, "momentum cannot be used with AdaGrad"),
    ("RMSProp", {"rms_decay": 1.5}, "rms_decay must be in [0, 1)"),
])
def test_type_specific_checks_name_the_line(tmp_path, solver_type, fields, message):
    from pycaffe_mct.errors import CaffeError
    path = write_solver(tmp_path, CONSTANT_NET, type=f'"{solver_type}"', **fields)
    with pytest.raises(CaffeError, match=r"solver.prototxt:\d+: " + message.replace(
            "[", r"\[").replace(")", r"\)")):
        quiet_solver(path)


def test_pycaffe_class_overrides_the_file_type(tmp_path):
    path = write_solver(tmp_path, CONSTANT_NET, type='"Adam"')
    solver = SGDSolver(str(path))
    assert type(solver) is SGDSolver and solver.param.type == "SGD"
    assert len(solver.history) == len(solver.net.learnable_params)
