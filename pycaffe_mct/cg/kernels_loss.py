"""numba kernels of the loss and accuracy layers.

Score and probability arrays arrive flat, laid out as (outer, classes, inner)
(inner is 1 for plain (batch, classes) scores); labels and per-prediction
weights arrive flat as (outer, inner).  A unit is one ``outer`` index, i.e.
one sample with all its classes and spatial positions; ``lo``/``hi`` select the
units of one tile (literal mode) or all of them (fast mode).  Offsets are
``uint64`` so that numba emits no negative-index wraparound code; every
operand of an offset expression is converted with ``U`` first, since mixing
signed and unsigned integers gives a float in numba.  Loss sums accumulate in
float64 and come back as the kernel's return value (a ``prange`` reduction),
so that a tile's partial sum never needs a batch-sized scratch array.
"""
import math

import numba
import numpy as np

_JIT = dict(nogil=True, cache=True)
U = numba.uint64


@numba.njit(parallel=True, **_JIT)
def prediction_labels(raw, classes, ignore_label, has_ignore, extra, has_extra,
                      labels, weights, lo, hi):
    """Integer labels (truncated as Caffe's static_cast<int>) and weights of predictions.

    An ignored label becomes 0 with weight 0, a label outside [0, classes) -1
    with weight 0; other weights are 1, or ``extra``'s value.  Returns the
    number of bad labels and the sum of the weights.
    """
    bad = 0
    total = 0.0
    for k in numba.prange(lo, hi):
        i = U(k)
        label = np.int64(raw[i])
        if has_ignore and label == ignore_label:
            labels[i] = 0
            weights[i] = 0.0
        elif label < 0 or label >= classes:
            labels[i] = -1
            weights[i] = 0.0
            bad += 1
        else:
            labels[i] = label
            weight = extra[i] if has_extra else np.float32(1.0)
            weights[i] = weight
            total += weight
    return bad, total


@numba.njit(parallel=True, **_JIT)
def label_log_loss(prob, labels, weights, channels, inner, threshold, lo, hi):
    """sum of weight * -log(max(prob[label], threshold)) over the predictions of [lo, hi)."""
    c_count, i_count = U(channels), U(inner)
    total = 0.0
    for o in numba.prange(lo, hi):
        row = U(o) * i_count
        for j in range(i_count):
            weight = weights[row + j]
            if weight != 0:
                picked = prob[(U(o) * c_count + U(labels[row + j])) * i_count + j]
                total -= weight * math.log(np.float64(max(picked, threshold)))
    return total


@numba.njit(parallel=True, **_JIT)
def label_reciprocal_gradient(prob, labels, weights, channels, inner, threshold, scale,
                              out, lo, hi):
    """out = scale * weight / max(prob, threshold) at each label, 0 elsewhere."""
    c_count, i_count = U(channels), U(inner)
    for o in numba.prange(lo, hi):
        start = U(o) * c_count * i_count
        for m in range(c_count * i_count):
            out[start + m] = 0.0
        row = U(o) * i_count
        for j in range(i_count):
            at = start + U(labels[row + j]) * i_count + j
            out[at] = scale * weights[row + j] / max(prob[at], threshold)


@numba.njit(inline="always", **_JIT)
def _negated_at_label(value, c, label):
    """Hinge's d * value: -value for the label's class, value for the others."""
    return -value if c == label else value


@numba.njit(parallel=True, **_JIT)
def hinge_forward(scores, labels, channels, squared, margins, lo, hi):
    """margins = max(0, 1 + d * x), d = -1 at the label and +1 elsewhere; returns the sum
    of the margins (or of their squares)."""
    c_count = U(channels)
    total = 0.0
    for n in numba.prange(lo, hi):
        start = U(n) * c_count
        label = U(labels[U(n)])
        for c in range(c_count):
            margin = max(np.float32(0.0),
                         np.float32(1.0) + _negated_at_label(scores[start + c], c, label))
            margins[start + c] = margin
            total += margin * margin if squared else margin
    return total


@numba.njit(parallel=True, **_JIT)
def hinge_backward(margins, labels, channels, squared, scale, out, lo, hi):
    """out = 2 scale * g (L2) or scale * sign(g) (L1), g the margins negated at the label."""
    c_count = U(channels)
    for n in numba.prange(lo, hi):
        start = U(n) * c_count
        label = U(labels[U(n)])
        for c in range(c_count):
            value = _negated_at_label(margins[start + c], c, label)
            if squared:
                out[start + c] = 2 * scale * value
            else:
                out[start + c] = scale * np.sign(value)


@numba.njit(parallel=True, **_JIT)
def infogain_forward(prob, labels, weights, matrix, channels, inner, threshold, lo, hi):
    """sum of weight * -sum_c H[label, c] log(max(prob_c, threshold)) over the predictions."""
    c_count, i_count = U(channels), U(inner)
    total = 0.0
    for o in numba.prange(lo, hi):
        row = U(o) * i_count
        for j in range(i_count):
            weight = weights[row + j]
            if weight == 0:
                continue
            gains = U(labels[row + j]) * c_count
            point = 0.0
            for c in range(c_count):
                p = max(prob[(U(o) * c_count + c) * i_count + j], threshold)
                point -= matrix[gains + c] * math.log(np.float64(p))
            total += weight * point
    return total


@numba.njit(parallel=True, **_JIT)
def infogain_backward(prob, labels, weights, matrix, channels, inner, scale, out, lo, hi):
    """out = scale * weight * (prob_c * sum_l H[label, l] - H[label, c])."""
    c_count, i_count = U(channels), U(inner)
    for o in numba.prange(lo, hi):
        row = U(o) * i_count
        for j in range(i_count):
            gains = U(labels[row + j]) * c_count
            row_sum = 0.0
            for c in range(c_count):
                row_sum += matrix[gains + c]
            factor = scale * weights[row + j]
            for c in range(c_count):
                at = (U(o) * c_count + c) * i_count + j
                out[at] = factor * (prob[at] * row_sum - matrix[gains + c])


@numba.njit(parallel=True, **_JIT)
def contrastive_forward(difference, similarity, dim, margin, legacy, dist_sq, lo, hi):
    """dist_sq = |a - b|^2 per pair; returns the sum of d^2 over similar pairs plus
    max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)) over dissimilar ones."""
    d_count = U(dim)
    total = 0.0
    for n in numba.prange(lo, hi):
        start = U(n) * d_count
        squares = 0.0
        for m in range(d_count):
            squares += np.float64(difference[start + m]) ** 2
        dist_sq[U(n)] = squares
        if np.int64(similarity[U(n)]) != 0:
            total += squares
        elif legacy:
            total += max(margin - squares, 0.0)
        else:
            total += max(margin - math.sqrt(squares), 0.0) ** 2
    return total


@numba.njit(parallel=True, **_JIT)
def contrastive_backward(difference, similarity, dist_sq, dim, margin, legacy, alpha, out,
                         lo, hi):
    """Caffe's gradient: alpha (a - b) for similar pairs; for dissimilar ones within the
    margin -alpha (a - b), scaled by (margin - d) / (d + 1e-4) unless legacy."""
    d_count = U(dim)
    for n in numba.prange(lo, hi):
        start = U(n) * d_count
        if np.int64(similarity[U(n)]) != 0:
            factor = alpha
        elif legacy:
            factor = -alpha if margin - dist_sq[U(n)] > 0 else 0.0
        else:
            dist = math.sqrt(dist_sq[U(n)])
            gap = margin - dist
            factor = -alpha * gap / (dist + 1e-4) if gap > 0 else 0.0
        for m in range(d_count):
            out[start + m] = np.float32(factor) * difference[start + m]


@numba.njit(inline="always", **_JIT)
def _row_log_sum_exp(scores, start, c_count, divisor):
    """(max, log sum exp) of scores[start:start + classes] / divisor, in float64."""
    top = np.float64(scores[start]) / divisor
    for c in range(c_count):
        top = max(top, np.float64(scores[start + c]) / divisor)
    total = 0.0
    for c in range(c_count):
        total += math.exp(np.float64(scores[start + c]) / divisor - top)
    return top + math.log(total)


@numba.njit(parallel=True, **_JIT)
def soft_target_forward(primary, aux, labels, weights, channels, temperature, weighted_soft,
                        lo, hi):
    """(sum of w * -log softmax(z_p)[label], sum of s * KL(softmax(z_a/T) || softmax(z_p/T)))
    with s = w when ``weighted_soft`` else 1; probabilities clipped at the smallest double."""
    c_count = U(channels)
    tiny = np.finfo(np.float64).tiny
    hard = 0.0
    soft = 0.0
    for n in numba.prange(lo, hi):
        start = U(n) * c_count
        weight = np.float64(weights[U(n)])
        log_norm = _row_log_sum_exp(primary, start, c_count, 1.0)
        picked = math.exp(np.float64(primary[start + U(labels[U(n)])]) - log_norm)
        hard -= weight * math.log(max(picked, tiny))
        soft_norm_p = _row_log_sum_exp(primary, start, c_count, temperature)
        soft_norm_a = _row_log_sum_exp(aux, start, c_count, temperature)
        kl = 0.0
        for c in range(c_count):
            q = math.exp(np.float64(aux[start + c]) / temperature - soft_norm_a)
            r = math.exp(np.float64(primary[start + c]) / temperature - soft_norm_p)
            kl += q * (math.log(max(q, tiny)) - math.log(max(r, tiny)))
        soft += (weight if weighted_soft else 1.0) * kl
    return hard, soft


@numba.njit(parallel=True, **_JIT)
def soft_target_backward(primary, aux, labels, weights, channels, temperature, weighted_soft,
                         hard_scale, soft_scale, out, lo, hi):
    """out = hard_scale * w (softmax(z_p) - onehot) + soft_scale * s (softmax(z_p/T)
    - softmax(z_a/T)), s as in the forward."""
    c_count = U(channels)
    for n in numba.prange(lo, hi):
        start = U(n) * c_count
        label = U(labels[U(n)])
        weight = np.float64(weights[U(n)])
        hard = hard_scale * weight
        soft = soft_scale * (weight if weighted_soft else 1.0)
        log_norm = _row_log_sum_exp(primary, start, c_count, 1.0)
        soft_norm_p = _row_log_sum_exp(primary, start, c_count, temperature)
        soft_norm_a = _row_log_sum_exp(aux, start, c_count, temperature)
        for c in range(c_count):
            z = np.float64(primary[start + c])
            prob = math.exp(z - log_norm) - (1.0 if c == label else 0.0)
            gap = (math.exp(z / temperature - soft_norm_p)
                   - math.exp(np.float64(aux[start + c]) / temperature - soft_norm_a))
            out[start + c] = hard * prob + soft * gap


@numba.njit(parallel=True, **_JIT)
def label_confidence(probs_a, probs_p, labels, channels, out, lo, hi):
    """out = the mean of the two models' probabilities of each sample's label (float64)."""
    c_count = U(channels)
    for n in numba.prange(lo, hi):
        at = U(n) * c_count + U(labels[U(n)])
        out[U(n)] = 0.5 * (np.float64(probs_a[at]) + np.float64(probs_p[at]))


@numba.njit(parallel=True, **_JIT)
def accuracy_counts(scores, labels, weights, channels, inner, top_k, totals, rights, lo, hi):
    """Per class: valid predictions and those whose label is among the top_k scores.

    Caffe's rule: a prediction is right when fewer than top_k other classes
    score at least as high as the true one, so a tie counts against it.  Row p
    of ``totals``/``rights`` collects part p of [lo, hi) (one part per host
    thread, added up by the caller).
    """
    c_count, i_count = U(channels), U(inner)
    parts = totals.shape[0]
    for part in numba.prange(parts):
        first = lo + (hi - lo) * part // parts
        last = lo + (hi - lo) * (part + 1) // parts
        for o in range(first, last):
            row = U(o) * i_count
            for j in range(i_count):
                if weights[row + j] == 0:
                    continue
                label = U(labels[row + j])
                base = U(o) * c_count * i_count + j
                truth = scores[base + label * i_count]
                better = -1
                for c in range(c_count):
                    if scores[base + c * i_count] >= truth:
                        better += 1
                totals[part, label] += 1
                if better < top_k:
                    rights[part, label] += 1


def count_parts(units):
    """Rows of partial counts ``accuracy_counts`` fills for ``units`` units: one per host
    thread that gets work."""
    return max(1, min(numba.get_num_threads(), units))
