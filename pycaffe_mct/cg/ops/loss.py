"""Losses and accuracy, including the layer-specific ones (Infogain, Hinge,
Contrastive, SoftTarget, MCT's label confidence): ops and numba kernels.

Scores and probabilities are (outer, classes, inner) arrays (inner 1 for plain
(batch, classes) ones); labels (int32) and per-prediction weights (float32) are
(outer, inner), as ``prediction_labels`` makes them, and arrive flat in the
kernels.  A unit is one outer index, i.e. one sample with all its classes and
spatial positions.  Loss sums accumulate in float64 and come back as the
kernel's return value, so that a tile's partial sum never needs a batch-sized
scratch array.  The kernels are serial (``parallel=True`` ones took several
times as long to compile, and most losses see a batch of scores only); those
without a sum let the scheduler spread a large call over the host threads.
"""
import math

import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U


def label_gradient(prob, labels, weights, scale, out):
    """out = (prob - one_hot(labels)) * weights * scale over axis 1 of (outer, C, inner)
    arrays; labels (integers) and weights are (outer, inner): SoftmaxWithLoss's gradient."""
    outer, channels, inner = prob.shape
    columns = np.arange(inner)[None, :]

    def run(lo, hi):
        target = out[lo:hi]
        np.copyto(target, prob[lo:hi])
        target[np.arange(hi - lo)[:, None], labels[lo:hi], columns] -= 1.0
        target *= weights[lo:hi, None, :]
        target *= np.float32(scale)
    per_outer = channels * inner
    scheduler.units("label_gradient", outer,
                    per_outer * prob.itemsize + inner * (labels.itemsize + weights.itemsize),
                    per_outer * out.itemsize, 2 * per_outer, run)


def prediction_labels(raw, classes, ignore_label=None, weights=None):
    """(labels, weights, weight sum, first bad label) of a label blob's values ``raw``.

    labels are int32, 0 where ``ignore_label``; weights are float32, 0 there
    and else 1 or ``weights``' value, so their sum is Caffe's valid count when
    unweighted; the first label outside [0, classes) is returned as an int
    (None if all are inside) for the layer's error message.
    """
    flat = raw.reshape(-1)
    labels = np.empty(flat.shape, np.int32)
    out_weights = np.empty(flat.shape, np.float32)
    weighted = weights is not None
    extra = weights.reshape(-1) if weighted else np.empty(1, np.float32)
    has_ignore = ignore_label is not None
    bad, total = _summed(
        "prediction_labels", flat.size, flat.itemsize + weighted * extra.itemsize,
        labels.itemsize + out_weights.itemsize, 1, 2,
        lambda lo, hi: prediction_labels_kernel(
            flat, classes, ignore_label if has_ignore else 0, has_ignore, extra, weighted,
            labels, out_weights, lo, hi))
    first = int(flat[np.argmax(labels < 0)]) if bad else None
    return labels.reshape(raw.shape), out_weights.reshape(raw.shape), total, first


def _summed(kernel_name, count, in_bytes, out_bytes, flops, sums, call):
    """Run a unit kernel returning ``sums`` partial sums per tile; their totals, as floats."""
    partials = []
    scheduler.units(kernel_name, count, in_bytes, out_bytes, flops,
                    lambda lo, hi: partials.append(np.atleast_1d(call(lo, hi))))
    totals = np.sum(partials, axis=0) if partials else np.zeros(sums)
    return tuple(float(total) for total in totals) if sums > 1 else float(totals[0])


def _flat(*arrays):
    """Flat views of C-contiguous arrays, as the loss kernels take them."""
    return [array.reshape(-1) for array in arrays]


def _point_bytes(labels, weights):
    """Bytes of one prediction's label and weight."""
    return labels.itemsize + weights.itemsize


def label_log_loss(prob, labels, weights, threshold):
    """sum of weights * -log(max(prob at the label, threshold)): the multinomial logistic
    loss of SoftmaxWithLoss and MultinomialLogisticLoss, before normalisation."""
    outer, channels, inner = prob.shape
    p, y, w = _flat(prob, labels, weights)
    return _summed("label_log_loss", outer, inner * (prob.itemsize + _point_bytes(y, w)), 0,
                   4 * inner, 1,
                   lambda lo, hi: weighted_log_loss_kernel(
                       p, y, w, None, channels, inner, np.float32(threshold), lo, hi))


def label_reciprocal_gradient(prob, labels, weights, threshold, scale, out):
    """out = scale * weights / max(prob, threshold) at the labels, 0 elsewhere
    (MultinomialLogisticLoss's gradient)."""
    outer, channels, inner = prob.shape
    p, y, w, target = _flat(prob, labels, weights, out)
    scheduler.units("label_reciprocal_gradient", outer,
                    inner * (prob.itemsize + _point_bytes(y, w)),
                    channels * inner * out.itemsize, 2 * inner,
                    lambda lo, hi: label_reciprocal_gradient_kernel(
                        p, y, w, channels, inner, np.float32(threshold), np.float32(scale),
                        target, lo, hi), spread=True)


def hinge_margins(scores, labels, squared, margins):
    """margins = max(0, 1 + d * scores), d = -1 at each row's label and +1 elsewhere, for
    (batch, classes) scores; returns the sum of the margins (of their squares if ``squared``)."""
    num, channels = scores.shape
    x, y, target = _flat(scores, labels, margins)
    row = channels * scores.itemsize
    return _summed("hinge_forward", num, row + y.itemsize, row, 3 * channels, 1,
                   lambda lo, hi: hinge_forward_kernel(x, y, channels, squared, target,
                                                       lo, hi))


def hinge_gradient(margins, labels, squared, scale, out):
    """out = 2 scale * g if ``squared`` else scale * sign(g), g = the margins negated at
    each row's label (HingeLoss's gradient)."""
    num, channels = margins.shape
    m, y, target = _flat(margins, labels, out)
    row = channels * margins.itemsize
    scheduler.units("hinge_backward", num, row + y.itemsize, row, 2 * channels,
                    lambda lo, hi: hinge_backward_kernel(
                        m, y, channels, squared, np.float32(scale), target, lo, hi), spread=True)


def _infogain_bytes(prob, labels, weights):
    """Per unit and prediction: its probabilities, its label's gain-matrix row, its label
    and weight."""
    _, channels, inner = prob.shape
    return inner * (2 * channels * prob.itemsize + _point_bytes(labels, weights))


def infogain_loss(prob, labels, weights, matrix, threshold):
    """sum of weights * -sum_c H[label, c] log(max(prob_c, threshold)), H the (classes,
    classes) gain matrix: InfogainLoss before normalisation."""
    outer, channels, inner = prob.shape
    p, y, w = _flat(prob, labels, weights)
    gains = np.ascontiguousarray(matrix, np.float32).reshape(-1)
    return _summed("infogain_forward", outer, _infogain_bytes(prob, y, w), 0,
                   6 * channels * inner, 1,
                   lambda lo, hi: weighted_log_loss_kernel(
                       p, y, w, gains, channels, inner, np.float32(threshold), lo, hi))


def infogain_gradient(prob, labels, weights, matrix, scale, out):
    """out = scale * weights * (prob * sum_l H[label, l] - H[label, :]) (InfogainLoss's
    gradient with respect to the scores under the softmax)."""
    outer, channels, inner = prob.shape
    p, y, w, target = _flat(prob, labels, weights, out)
    gains = np.ascontiguousarray(matrix, np.float32).reshape(-1)
    scheduler.units("infogain_backward", outer, _infogain_bytes(prob, y, w),
                    channels * inner * out.itemsize, 4 * channels * inner,
                    lambda lo, hi: infogain_backward_kernel(
                        p, y, w, gains, channels, inner, np.float32(scale), target, lo, hi),
                    spread=True)


def contrastive_loss(difference, similarity, margin, legacy, dist_sq):
    """dist_sq (float64) = each pair's squared distance from ``difference`` (pairs, dim);
    returns ContrastiveLoss's sum (d^2 for similar pairs, max(margin - d, 0)^2, legacy
    max(margin - d^2, 0), for the others) before dividing by 2N."""
    num, dim = difference.shape
    d, s = _flat(difference, similarity)
    return _summed("contrastive_forward", num, dim * d.itemsize + s.itemsize, dist_sq.itemsize,
                   2 * dim + 4, 1,
                   lambda lo, hi: contrastive_forward_kernel(
                       d, s, dim, float(margin), legacy, dist_sq, lo, hi))


def contrastive_gradient(difference, similarity, dist_sq, margin, legacy, alpha, out):
    """ContrastiveLoss's gradient, ``alpha`` = sign * loss weight / N (Caffe's, including
    the 1e-4 added to d for dissimilar pairs)."""
    num, dim = difference.shape
    d, s, target = _flat(difference, similarity, out)
    scheduler.units("contrastive_backward", num, dim * d.itemsize + s.itemsize + dist_sq.itemsize,
                    dim * out.itemsize, dim + 6,
                    lambda lo, hi: contrastive_backward_kernel(
                        d, s, dist_sq, dim, float(margin), legacy, float(alpha), target, lo, hi),
                    spread=True)


def soft_target_loss(primary, aux, labels, weights, temperature, weighted_soft):
    """(sum_i w_i * -log softmax(z_p)_i[y_i], sum_i s_i * KL(softmax(z_a/T)_i ||
    softmax(z_p/T)_i)) over (batch, classes) scores, s = w if ``weighted_soft`` else 1;
    in float64 (SoftTargetLoss before weighting and normalising)."""
    num, channels = primary.shape
    zp, za, y, w = _flat(primary, aux, labels, weights)
    return _summed("soft_target_forward", num, 2 * channels * zp.itemsize + _point_bytes(y, w),
                   0, 20 * channels, 2,
                   lambda lo, hi: soft_target_forward_kernel(
                       zp, za, y, w, channels, float(temperature), weighted_soft, lo, hi))


def soft_target_gradient(primary, aux, labels, weights, temperature, weighted_soft,
                         hard_scale, soft_scale, out):
    """out = hard_scale * w * (softmax(z_p) - onehot(y)) + soft_scale * s * (softmax(z_p/T)
    - softmax(z_a/T)), s as in ``soft_target_loss``."""
    num, channels = primary.shape
    zp, za, y, w, target = _flat(primary, aux, labels, weights, out)
    scheduler.units("soft_target_backward", num,
                    2 * channels * zp.itemsize + _point_bytes(y, w), channels * out.itemsize,
                    20 * channels,
                    lambda lo, hi: soft_target_backward_kernel(
                        zp, za, y, w, channels, float(temperature), weighted_soft,
                        float(hard_scale), float(soft_scale), target, lo, hi), spread=True)


def label_confidence(probs_a, probs_p, labels):
    """Per sample, the mean of two models' (batch, classes) probabilities of its label,
    as float64: MCT's confidence."""
    num, channels = probs_a.shape
    pa, pp, y = _flat(probs_a, probs_p, labels)
    out = np.empty(num, np.float64)
    scheduler.units("label_confidence", num, 2 * pa.itemsize + y.itemsize, out.itemsize, 2,
                    lambda lo, hi: label_confidence_kernel(pa, pp, y, channels, out,
                                                           lo, hi), spread=True)
    return out


def accuracy_counts(scores, labels, weights, top_k):
    """Per class: (predictions with weight != 0, those whose label is among the ``top_k``
    scores by Caffe's rule, where a tie with the true class counts as a miss), as int64."""
    outer, channels, inner = scores.shape
    x, y, w = _flat(scores, labels, weights)
    totals = np.zeros(channels, np.int64)
    rights = np.zeros(channels, np.int64)
    scheduler.units("accuracy", outer, inner * (channels * x.itemsize + _point_bytes(y, w)), 0,
                    channels * inner,
                    lambda lo, hi: accuracy_counts_kernel(x, y, w, channels, inner, top_k,
                                                          totals, rights, lo, hi))
    return totals, rights


@numba.njit(**JIT)
def prediction_labels_kernel(raw, classes, ignore_label, has_ignore, extra, has_extra, labels,
                             weights, lo, hi):
    """Integer labels (truncated as Caffe's static_cast<int>) and weights of predictions.

    An ignored label becomes 0 with weight 0, a label outside [0, classes) -1
    with weight 0; other weights are 1, or ``extra``'s value.  Returns the
    number of bad labels and the sum of the weights.
    """
    bad = 0
    total = 0.0
    for k in range(lo, hi):
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


@numba.njit
def _log_loss_at(prob, label, matrix, o, j, c_count, i_count, threshold):
    """Prediction (o, j)'s loss: -log(max(prob at its label, threshold)), or with a gain
    matrix H (flat, classes x classes), -sum_c H[label, c] log(max(prob_c, threshold))."""
    if matrix is None:
        picked = prob[(U(o) * c_count + label) * i_count + j]
        return -math.log(np.float64(max(picked, threshold)))
    gains = label * c_count
    point = 0.0
    for c in range(c_count):
        p = max(prob[(U(o) * c_count + c) * i_count + j], threshold)
        point -= matrix[gains + c] * math.log(np.float64(p))
    return point


@numba.njit(**JIT)
def weighted_log_loss_kernel(prob, labels, weights, matrix, channels, inner, threshold, lo, hi):
    """sum of weight * the prediction's log loss (_log_loss_at; matrix None for the
    multinomial logistic loss, the gain matrix for InfogainLoss) over outer [lo, hi)."""
    c_count, i_count = U(channels), U(inner)
    total = 0.0
    for o in range(lo, hi):
        row = U(o) * i_count
        for j in range(i_count):
            weight = weights[row + j]
            if weight != 0:
                total += weight * _log_loss_at(prob, U(labels[row + j]), matrix, o, j,
                                               c_count, i_count, threshold)
    return total


@numba.njit(**JIT)
def label_reciprocal_gradient_kernel(prob, labels, weights, channels, inner, threshold, scale,
                                     out, lo, hi):
    """out = scale * weight / max(prob, threshold) at each label, 0 elsewhere."""
    c_count, i_count = U(channels), U(inner)
    for o in range(lo, hi):
        start = U(o) * c_count * i_count
        for m in range(c_count * i_count):
            out[start + m] = 0.0
        row = U(o) * i_count
        for j in range(i_count):
            at = start + U(labels[row + j]) * i_count + j
            out[at] = scale * weights[row + j] / max(prob[at], threshold)


@numba.njit(inline="always", **JIT)
def _negated_at_label(value, c, label):
    """Hinge's d * value: -value for the label's class, value for the others."""
    return -value if c == label else value


@numba.njit(**JIT)
def hinge_forward_kernel(scores, labels, channels, squared, margins, lo, hi):
    """margins = max(0, 1 + d * x), d = -1 at the label and +1 elsewhere; returns the sum
    of the margins (or of their squares)."""
    c_count = U(channels)
    total = 0.0
    for n in range(lo, hi):
        start = U(n) * c_count
        label = U(labels[U(n)])
        for c in range(c_count):
            margin = max(np.float32(0.0),
                         np.float32(1.0) + _negated_at_label(scores[start + c], c, label))
            margins[start + c] = margin
            total += margin * margin if squared else margin
    return total


@numba.njit(**JIT)
def hinge_backward_kernel(margins, labels, channels, squared, scale, out, lo, hi):
    """out = 2 scale * g (L2) or scale * sign(g) (L1), g the margins negated at the label."""
    c_count = U(channels)
    for n in range(lo, hi):
        start = U(n) * c_count
        label = U(labels[U(n)])
        for c in range(c_count):
            value = _negated_at_label(margins[start + c], c, label)
            if squared:
                out[start + c] = 2 * scale * value
            else:
                out[start + c] = scale * np.sign(value)


@numba.njit(**JIT)
def infogain_backward_kernel(prob, labels, weights, matrix, channels, inner, scale, out, lo, hi):
    """out = scale * weight * (prob_c * sum_l H[label, l] - H[label, c])."""
    c_count, i_count = U(channels), U(inner)
    for o in range(lo, hi):
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


@numba.njit(**JIT)
def contrastive_forward_kernel(difference, similarity, dim, margin, legacy, dist_sq, lo, hi):
    """dist_sq = |a - b|^2 per pair; returns the sum of d^2 over similar pairs plus
    max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)) over dissimilar ones."""
    d_count = U(dim)
    total = 0.0
    for n in range(lo, hi):
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


@numba.njit(**JIT)
def contrastive_backward_kernel(difference, similarity, dist_sq, dim, margin, legacy, alpha, out,
                                lo, hi):
    """Caffe's gradient: alpha (a - b) for similar pairs; for dissimilar ones within the
    margin -alpha (a - b), scaled by (margin - d) / (d + 1e-4) unless legacy."""
    d_count = U(dim)
    for n in range(lo, hi):
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


@numba.njit(inline="always", **JIT)
def _row_log_sum_exp(scores, start, c_count, divisor):
    """(max, log sum exp) of scores[start:start + classes] / divisor, in float64."""
    top = np.float64(scores[start]) / divisor
    for c in range(c_count):
        top = max(top, np.float64(scores[start + c]) / divisor)
    total = 0.0
    for c in range(c_count):
        total += math.exp(np.float64(scores[start + c]) / divisor - top)
    return top + math.log(total)


@numba.njit(**JIT)
def soft_target_forward_kernel(primary, aux, labels, weights, channels, temperature,
                               weighted_soft, lo, hi):
    """(sum of w * -log softmax(z_p)[label], sum of s * KL(softmax(z_a/T) || softmax(z_p/T)))
    with s = w when ``weighted_soft`` else 1; probabilities clipped at the smallest double."""
    c_count = U(channels)
    tiny = np.finfo(np.float64).tiny
    hard = 0.0
    soft = 0.0
    for n in range(lo, hi):
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


@numba.njit(**JIT)
def soft_target_backward_kernel(primary, aux, labels, weights, channels, temperature,
                                weighted_soft, hard_scale, soft_scale, out, lo, hi):
    """out = hard_scale * w (softmax(z_p) - onehot) + soft_scale * s (softmax(z_p/T)
    - softmax(z_a/T)), s as in the forward."""
    c_count = U(channels)
    for n in range(lo, hi):
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


@numba.njit(**JIT)
def label_confidence_kernel(probs_a, probs_p, labels, channels, out, lo, hi):
    """out = the mean of the two models' probabilities of each sample's label (float64)."""
    c_count = U(channels)
    for n in range(lo, hi):
        at = U(n) * c_count + U(labels[U(n)])
        out[U(n)] = 0.5 * (np.float64(probs_a[at]) + np.float64(probs_p[at]))


@numba.njit(**JIT)
def accuracy_counts_kernel(scores, labels, weights, channels, inner, top_k, totals, rights, lo,
                           hi):
    """Per class, added to totals/rights: valid predictions of outer [lo, hi) and those
    whose label is among the top_k scores.

    Caffe's rule: a prediction is right when fewer than top_k other classes
    score at least as high as the true one, so a tie counts against it.
    """
    c_count, i_count = U(channels), U(inner)
    for o in range(lo, hi):
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
            totals[label] += 1
            if better < top_k:
                rights[label] += 1
