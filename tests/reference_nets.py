"""A plain-numpy float64 executor of whole nets, forward and backward, for the numerics tests.

It walks a NetParameter's layers in order, computing each with the functions of
reference_layers.py and recording a tape; ``backward`` replays the tape in
reverse with hand-derived numpy gradients.  It shares no code with pycaffe_mct
beyond reading the prototxt messages.  In-place layers are handled by giving
every write of a blob name a new version.
"""
import numpy as np

import reference_layers as ref


def _pair(p, name, default):
    values = list(getattr(p, name))
    if not values:
        return (default, default)
    return (values[0], values[-1])


def _conv_geometry(p):
    return dict(stride=_pair(p, "stride", 1), pad=_pair(p, "pad", 0),
                dilation=_pair(p, "dilation", 1), group=p.group)


def conv_backward(x, w, dy, stride, pad, dilation, group):
    """(dx, dw, db) of ref.conv, tap by tap."""
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    oh, ow = dy.shape[2:]
    og = o // group
    for g in range(group):
        dy_g = dy[:, g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                window = (slice(None), slice(g * cg, (g + 1) * cg),
                          slice(i * dilation[0], i * dilation[0] + stride[0] * (oh - 1) + 1,
                                stride[0]),
                          slice(j * dilation[1], j * dilation[1] + stride[1] * (ow - 1) + 1,
                                stride[1]))
                dw[g * og:(g + 1) * og, :, i, j] = np.einsum("nohw,nchw->oc", dy_g, xp[window])
                dxp[window] += np.einsum("nohw,oc->nchw", dy_g, w[g * og:(g + 1) * og, :, i, j])
    dx = dxp[:, :, pad[0]:pad[0] + x.shape[2], pad[1]:pad[1] + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def pool_backward(x, dy, method, kernel, stride, pad):
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            y0, x0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
            y1, x1 = min(y0 + kernel[0], h + pad[0]), min(x0 + kernel[1], w + pad[1])
            rows, cols = slice(max(y0, 0), min(y1, h)), slice(max(x0, 0), min(x1, w))
            if method == "MAX":
                window = x[:, :, rows, cols].reshape(n, c, -1)
                first = window.argmax(axis=2)             # first maximum, row-major
                mask = np.zeros_like(window)
                np.put_along_axis(mask, first[..., None], 1.0, axis=2)
                dx[:, :, rows, cols] += (mask * dy[:, :, i, j][..., None]).reshape(
                    n, c, rows.stop - rows.start, cols.stop - cols.start)
            else:
                dx[:, :, rows, cols] += (dy[:, :, i, j] / ((y1 - y0) * (x1 - x0)))[..., None, None]
    return dx


def lrn_across_backward(x, dy, size, alpha, beta, k):
    c = x.shape[1]
    pre = (size - 1) // 2
    square = np.pad(x * x, ((0, 0), (pre, size - 1 - pre), (0, 0), (0, 0)))
    scale = k + alpha / size * sum(square[:, i:i + c] for i in range(size))
    t = dy * x * (-beta) * scale ** (-beta - 1) * (alpha / size)
    padded = np.pad(t, ((0, 0), (size - 1 - pre, pre), (0, 0), (0, 0)))
    spread = sum(padded[:, i:i + c] for i in range(size))
    return dy * scale ** -beta + 2 * x * spread


def lrn_within_backward(x, dy, size, alpha, beta):
    pre = (size - 1) // 2
    scale = 1 + alpha * ref.pool(x * x, "AVE", (size, size), (1, 1), (pre, pre))
    t = dy * x * (-beta) * scale ** (-beta - 1) * alpha
    d_square = pool_backward(x, t, "AVE", (size, size), (1, 1), (pre, pre))
    return dy * scale ** -beta + 2 * x * d_square


KINK_BAND = 1e-4   # ReLU inputs this close to 0 (relative to the blob's max) are ambiguous


class ReferenceNet:
    """Run ``net_param`` (deploy style, Input layers) with the parameters ``params``
    ({layer name: [float64 arrays]}); ``train`` picks BatchNorm's batch statistics.

    ``relu_masks`` ({ReLU layer name: bool array}) settles the ReLU inputs that lie
    within KINK_BAND of zero, where float32 and float64 may disagree on the sign
    (the kink of Caffe's gradient checker); elsewhere the reference's own sign counts.
    """

    def __init__(self, net_param, params, train, relu_masks=None):
        self.layers = list(net_param.layer)
        self.params = params
        self.train = train
        self.relu_masks = relu_masks or {}

    # ---- forward --------------------------------------------------------------
    def forward(self, inputs):
        self.version = {}
        self.values = {}
        self.tape = []
        for layer in self.layers:
            if layer.type == "Input":
                for name in layer.top:
                    self._write(name, np.asarray(inputs[name], np.float64))
                continue
            bottoms = [self._key(name) for name in layer.bottom]
            outputs, cache = self._forward_layer(layer, [self.values[k] for k in bottoms])
            tops = [self._write(name, value) for name, value in zip(layer.top, outputs)]
            self.tape.append((layer, bottoms, tops, cache))
        return {name: self.values[self._key(name)] for name in self.version}

    def _key(self, name):
        return (name, self.version[name])

    def _write(self, name, value):
        self.version[name] = self.version.get(name, -1) + 1
        self.values[self._key(name)] = value
        return self._key(name)

    def _forward_layer(self, layer, xs):
        t, w = layer.type, self.params.get(layer.name, [])
        x = xs[0]
        if t == "Convolution":
            p = layer.convolution_param
            return [ref.conv(x, w[0], w[1] if p.bias_term else None, **_conv_geometry(p))], None
        if t == "InnerProduct":
            return [ref.inner_product(x, w[0], w[1])], None
        if t == "ReLU":
            return [np.maximum(x, 0)], None
        if t == "Dropout":
            if self.train:
                raise NotImplementedError("the reference runs Dropout in TEST only")
            return [x], None
        if t == "Pooling":
            p = layer.pooling_param
            method = "MAX" if p.pool == 0 else "AVE"
            return [ref.pool(x, method, (p.kernel_size,) * 2, (p.stride,) * 2, (p.pad,) * 2)], None
        if t == "LRN":
            p = layer.lrn_param
            if p.norm_region == 0:
                return [ref.lrn_across(x, p.local_size, p.alpha, p.beta, p.k)], None
            return [ref.lrn_within(x, p.local_size, p.alpha, p.beta)], None
        if t == "Concat":
            return [np.concatenate(xs, axis=1)], None
        if t == "Eltwise":
            return [sum(xs)], None
        if t == "Softmax":
            return [ref.softmax(x)], None
        if t == "BatchNorm":
            if self.train:
                mean, var = ref.batch_statistics(x)
            else:
                factor = 0.0 if w[2][0] == 0 else 1.0 / w[2][0]
                mean, var = w[0] * factor, w[1] * factor
            y = ref.batch_norm(x, mean, var, layer.batch_norm_param.eps)
            return [y], (y, np.sqrt(var + layer.batch_norm_param.eps))
        if t == "Scale":
            y = x * ref.broadcast(w[0], x.shape, 1)
            if layer.scale_param.bias_term:
                y = y + ref.broadcast(w[1], x.shape, 1)
            return [y], None
        raise NotImplementedError(f"reference has no layer type {t}")

    # ---- backward -------------------------------------------------------------
    def backward(self, top_diffs):
        """Gradients {layer name: [param grads]} given {blob name: d objective / d blob}."""
        grads = {self._key(name): np.asarray(d, np.float64) for name, d in top_diffs.items()}
        param_grads = {}
        for layer, bottoms, tops, cache in reversed(self.tape):
            dys = [grads.get(key, np.zeros_like(self.values[key])) for key in tops]
            xs = [self.values[key] for key in bottoms]
            ys = [self.values[key] for key in tops]
            dxs, dws = self._backward_layer(layer, xs, ys, dys, cache)
            if dws:
                param_grads[layer.name] = dws
            for key, dx in zip(bottoms, dxs):
                grads[key] = grads[key] + dx if key in grads else dx
        return param_grads

    def _backward_layer(self, layer, xs, ys, dys, cache):
        t, w = layer.type, self.params.get(layer.name, [])
        x, y, dy = xs[0], ys[0], dys[0]
        if t == "Convolution":
            p = layer.convolution_param
            dx, dw, db = conv_backward(x, w[0], dy, **_conv_geometry(p))
            return [dx], [dw, db] if p.bias_term else [dw]
        if t == "InnerProduct":
            flat = x.reshape(x.shape[0], -1)
            return [(dy @ w[0]).reshape(x.shape)], [dy.T @ flat, dy.sum(axis=0)]
        if t == "ReLU":
            mask = x > 0
            if layer.name in self.relu_masks:
                ambiguous = np.abs(x) <= KINK_BAND * np.abs(x).max()
                mask = np.where(ambiguous, self.relu_masks[layer.name], mask)
            return [dy * mask], None
        if t == "Dropout":
            return [dy], None
        if t == "Pooling":
            p = layer.pooling_param
            method = "MAX" if p.pool == 0 else "AVE"
            return [pool_backward(x, dy, method, (p.kernel_size,) * 2, (p.stride,) * 2,
                                  (p.pad,) * 2)], None
        if t == "LRN":
            p = layer.lrn_param
            if p.norm_region == 0:
                return [lrn_across_backward(x, dy, p.local_size, p.alpha, p.beta, p.k)], None
            return [lrn_within_backward(x, dy, p.local_size, p.alpha, p.beta)], None
        if t == "Concat":
            bounds = np.cumsum([part.shape[1] for part in xs])[:-1]
            return np.split(dy, bounds, axis=1), None
        if t == "Eltwise":
            return [dy] * len(xs), None
        if t == "Softmax":
            return [y * (dy - (dy * y).sum(axis=1, keepdims=True))], None
        if t == "BatchNorm":
            normalized, std = cache
            shape = (1, -1) + (1,) * (x.ndim - 2)
            if not self.train:
                return [dy / std.reshape(shape)], [np.zeros_like(a) for a in w]
            axes = (0,) + tuple(range(2, x.ndim))
            dx = (dy - dy.mean(axis=axes, keepdims=True)
                  - normalized * (dy * normalized).mean(axis=axes, keepdims=True))
            return [dx / std.reshape(shape)], [np.zeros_like(a) for a in w]
        if t == "Scale":
            axes = (0,) + tuple(range(2, x.ndim))
            dws = [(dy * x).sum(axis=axes)]
            if layer.scale_param.bias_term:
                dws.append(dy.sum(axis=axes))
            return [dy * ref.broadcast(w[0], x.shape, 1)], dws
        raise NotImplementedError(f"reference has no backward for {t}")
