"""Finite-difference gradient checking for layers, after Caffe's GradientChecker.

The objective is Caffe's: half the sum of squares of every top (so each top's
diff is its own data), or, for loss layers, the same of their scalar loss.
Each checked value ``x`` is moved by ``+-stepsize``; the centred difference
must match the analytic gradient within ``threshold * max(|a|, |e|, 1)``.
Checked values whose magnitude lies within ``kink_range`` of ``kink`` (ReLU's
0, say) are skipped, as Caffe does, since the function is not differentiable
there.

``exhaustive`` checks every element of small blobs; ``directional`` checks one
random direction for all values at once (Chainer's trick), fast on real shapes.
"""
import numpy as np

from . import rng


class GradientCheckError(AssertionError):
    """The analytic and numeric gradients disagree."""


def _objective(tops):
    total = 0.0
    for blob in tops:
        data = blob.data.astype(np.float64)
        total += 0.5 * float((data * data).sum())
        blob.diff[...] = blob.data
    return total


def _run(layer, bottoms, tops, seed):
    if seed is not None:
        rng.set_random_seed(seed)
    layer.forward(bottoms, tops)
    return _objective(tops)


def _analytic(layer, bottoms, tops, propagate, seed):
    """The analytic gradients: parameter diffs cleared first (Caffe accumulates them), the
    bottom diffs the layer is asked for filled with ``STALE_DIFF``, as a shared or reused
    diff array may hold anything, so a backward that adds to them instead of overwriting
    them fails the check.  A view layer's bottom diff is its top diff, set by the objective."""
    for blob in list(layer.blobs) + list(bottoms):
        blob.diff[...] = 0
    _run(layer, bottoms, tops, seed)
    for blob, asked in zip(bottoms, propagate):
        if asked and not any(np.shares_memory(blob.diff, top.diff) for top in tops):
            blob.diff[...] = STALE_DIFF
    layer.backward(tops, propagate, bottoms)


# What a bottom diff holds before a checked backward (see ``_analytic``).
STALE_DIFF = 1e3


def _targets(layer, bottoms, check_bottoms, check_params):
    indices = range(len(bottoms)) if check_bottoms is None else check_bottoms
    targets = [("bottom", i, bottoms[i]) for i in indices]
    if check_params:
        targets += [("param", i, blob) for i, blob in enumerate(layer.blobs)]
    return targets, [i in indices for i in range(len(bottoms))]


def check_gradient_exhaustive(layer, bottoms, tops, check_bottoms=None, check_params=True,
                              stepsize=1e-2, threshold=1e-3, kink=0.0, kink_range=-1.0,
                              seed=1701):
    """Check every element of the chosen bottoms and parameters; raise on mismatch."""
    layer.setup(bottoms, tops)
    targets, propagate = _targets(layer, bottoms, check_bottoms, check_params)
    _analytic(layer, bottoms, tops, propagate, seed)
    analytic = [blob.diff.copy() for _, _, blob in targets]
    for (kind, index, blob), grad in zip(targets, analytic):
        flat = blob.data.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + stepsize
            plus = _run(layer, bottoms, tops, seed)
            flat[i] = original - stepsize
            minus = _run(layer, bottoms, tops, seed)
            flat[i] = original
            # As Caffe: skip inputs within kink_range of the kink (ReLU's 0, say).
            if kink_range >= 0 and abs(abs(float(original)) - kink) <= kink_range:
                continue
            estimate = (plus - minus) / (2 * stepsize)
            computed = float(grad.reshape(-1)[i])
            scale = max(abs(computed), abs(estimate), 1.0)
            if abs(computed - estimate) > threshold * scale:
                raise GradientCheckError(
                    f"{layer.type} {kind} {index} element {i}: analytic {computed:.6g}, "
                    f"numeric {estimate:.6g} (threshold {threshold} x {scale:.3g})")


def check_gradient_directional(layer, bottoms, tops, check_bottoms=None, check_params=True,
                               stepsize=1e-2, threshold=1e-3, seed=1701, trials=3):
    """Check the gradient along random directions over all chosen values at once."""
    layer.setup(bottoms, tops)
    targets, propagate = _targets(layer, bottoms, check_bottoms, check_params)
    _analytic(layer, bottoms, tops, propagate, seed)
    analytic = [blob.diff.astype(np.float64) for _, _, blob in targets]
    directions_rng = np.random.default_rng(seed)
    for _ in range(trials):
        directions = [directions_rng.standard_normal(blob.shape) for _, _, blob in targets]
        norm = np.sqrt(sum(float((d * d).sum()) for d in directions)) or 1.0
        directions = [d / norm for d in directions]
        originals = [blob.data.copy() for _, _, blob in targets]
        values = []
        for sign in (1, -1):
            for (_, _, blob), original, d in zip(targets, originals, directions):
                blob.data[...] = original + sign * stepsize * d
            values.append(_run(layer, bottoms, tops, seed))
        for (_, _, blob), original in zip(targets, originals):
            blob.data[...] = original
        estimate = (values[0] - values[1]) / (2 * stepsize)
        computed = sum(float((g * d).sum()) for g, d in zip(analytic, directions))
        scale = max(abs(computed), abs(estimate), 1.0)
        if abs(computed - estimate) > threshold * scale:
            raise GradientCheckError(
                f"{layer.type}: directional derivative analytic {computed:.6g}, numeric "
                f"{estimate:.6g} (threshold {threshold} x {scale:.3g})")
