"""The core group's non-GEMM kernels against numpy and PyTorch CPU on the same shapes.

``python bench/bench_kernels.py`` times each op of ``pycaffe_mct.cg.ops`` that
the layers call (pooling, ReLU, Eltwise sum, softmax, LRN forward and
forward+backward, BatchNorm statistics, gradient sums and affine map) on
CIFAR10-quick, AlexNet and ResNet-50 shapes, and in the same run a plain
numpy version of the same computation and PyTorch's CPU op (skipped
with a message where torch is not installed; given numba's thread count).
Ratios are baseline time / our time: above 1 means ours is faster.  Best of
``--repeats``, the three measured alternately so that all see the same load.
"""
import argparse
import math
from functools import partial

# torch first: importing pycaffe_mct sets GOMP_SPINCOUNT (or OMP_WAIT_POLICY) for numba's
# OpenMP (cg/__init__.py), and torch's own OpenMP runtime, loaded later, would read it too.
try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

import numba
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pycaffe_mct.cg import ops

from bench_common import describe_threads, timed  # noqa: E402  (a sibling script)

rng = np.random.default_rng(0)


def rand(*shape):
    return rng.standard_normal(shape, dtype=np.float32)


def pooled(size, kernel, stride):
    """Caffe's (ceil) output size without padding."""
    return int(math.ceil((size - kernel) / stride)) + 1


def windows(x, kernel, stride, out_hw, fill):
    """(N, C, out_h, out_w, k*k) windows of x padded at the far side with ``fill``."""
    need = [(o - 1) * stride + kernel for o in out_hw]
    padded = np.pad(x, ((0, 0), (0, 0), (0, need[0] - x.shape[2]), (0, need[1] - x.shape[3])),
                    constant_values=fill)
    view = sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return view.reshape(view.shape[:4] + (-1,))


def pool_cases(name, shape, kernel, stride):
    """MAX and AVE pooling forward and backward, each as (label, ours, numpy, torch)."""
    x = rand(*shape)
    out_hw = tuple(pooled(s, kernel, stride) for s in shape[2:])
    out = np.empty(shape[:2] + out_hw, np.float32)
    argmax = np.empty(out.shape, np.int32)
    dy, dx = rand(*out.shape), np.empty_like(x)
    k, s = (kernel, kernel), (stride, stride)
    ops.max_pool_forward(x, k, s, (0, 0), out, argmax)
    plane = shape[2] * shape[3]
    flat_winners = (argmax.reshape(shape[0] * shape[1], -1)
                    + plane * np.arange(shape[0] * shape[1])[:, None]).reshape(-1)
    divisor = windows(np.ones((1, 1) + shape[2:], np.float32), kernel, stride, out_hw, 1.0)
    divisor = divisor.sum(axis=-1)      # no padding: the divisor is the whole window

    def numpy_max():
        view = windows(x, kernel, stride, out_hw, -np.inf)
        where = view.argmax(axis=-1)
        return np.take_along_axis(view, where[..., None], axis=-1), where

    def numpy_max_backward():
        return np.bincount(flat_winners, dy.reshape(-1), minlength=x.size)

    def numpy_ave():
        return windows(x, kernel, stride, out_hw, 0.0).sum(axis=-1) / divisor

    def numpy_ave_backward():
        grad = np.zeros((shape[0], shape[1]) + tuple((o - 1) * stride + kernel for o in out_hw),
                        np.float32)
        share = dy / divisor
        for ky in range(kernel):
            for kx in range(kernel):
                grad[:, :, ky:ky + stride * out_hw[0]:stride,
                     kx:kx + stride * out_hw[1]:stride] += share
        return grad[:, :, :shape[2], :shape[3]]

    torch_cases = [None] * 4
    if torch is not None:
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        _, indices = F.max_pool2d(xt, kernel, stride, ceil_mode=True, return_indices=True)
        torch_cases = [
            lambda: F.max_pool2d(xt, kernel, stride, ceil_mode=True, return_indices=True),
            lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                dyt, xt, k, s, (0, 0), (1, 1), True, indices),
            lambda: F.avg_pool2d(xt, kernel, stride, ceil_mode=True),
            lambda: torch.ops.aten.avg_pool2d_backward(dyt, xt, k, s, (0, 0), True, True, None)]
    return [
        (f"{name} MAX fwd", lambda: ops.max_pool_forward(x, k, s, (0, 0), out, argmax),
         numpy_max, torch_cases[0]),
        (f"{name} MAX bwd", lambda: ops.max_pool_backward(dy, argmax, dx), numpy_max_backward,
         torch_cases[1]),
        (f"{name} AVE fwd", lambda: ops.ave_pool_forward(x, k, s, (0, 0), out), numpy_ave,
         torch_cases[2]),
        (f"{name} AVE bwd", lambda: ops.ave_pool_backward(dy, k, s, (0, 0), dx),
         numpy_ave_backward, torch_cases[3]),
    ]


def relu_cases(name, shape):
    x, dy = rand(*shape), rand(*shape)
    out = np.empty_like(x)
    torch_cases = [None, None]
    if torch is not None:
        xt, dyt, outt = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(out)
        torch_cases = [lambda: torch.clamp_min(xt, 0, out=outt),
                       lambda: torch.ops.aten.threshold_backward(dyt, xt, 0)]
    return [(f"{name} ReLU fwd", lambda: ops.relu_forward(x, 0.0, out),
             lambda: np.maximum(x, 0, out=out), torch_cases[0]),
            (f"{name} ReLU bwd", lambda: ops.relu_backward(x, dy, 0.0, out),
             lambda: np.multiply(dy, x > 0, out=out), torch_cases[1])]


def sum_cases(name, shape):
    """Eltwise SUM / Split's backward: out = a + b."""
    a, b = rand(*shape), rand(*shape)
    out = np.empty_like(a)
    torch_way = None
    if torch is not None:
        at, bt, outt = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        torch_way = partial(torch.add, at, bt, out=outt)
    return [(f"{name} sum of 2", lambda: ops.sum_into([a, b], out),
             lambda: np.add(a, b, out=out), torch_way)]


def softmax_cases(name, shape):
    x, dy = rand(*shape) * 5, rand(*shape)
    out, dx = np.empty_like(x), np.empty_like(x)

    def numpy_softmax():
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    torch_cases = [None, None]
    if torch is not None:
        xt, dyt, outt = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(out)
        torch_cases = [lambda: torch.softmax(xt, 1),
                       lambda: torch.ops.aten._softmax_backward_data(dyt, outt, 1, torch.float32)]
    return [(f"{name} softmax fwd", lambda: ops.softmax_forward(x, out), numpy_softmax,
             torch_cases[0]),
            (f"{name} softmax bwd", lambda: ops.softmax_backward(out, dy, dx),
             lambda: (dy - (dy * out).sum(axis=1, keepdims=True)) * out, torch_cases[1])]


def lrn_cases(name, shape, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Across-channel LRN of an (N, C, H, W) input, viewed (N, C, H*W) as the layer does."""
    x4, dy4 = rand(*shape), rand(*shape)
    x, dy = x4.reshape(shape[0], shape[1], -1), dy4.reshape(shape[0], shape[1], -1)
    scale, out, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    pre = (size - 1) // 2

    def numpy_scale():
        squares = np.pad(x * x, ((0, 0), (pre, size - 1 - pre), (0, 0)))
        window = squares[:, :shape[1]].copy()
        for j in range(1, size):
            window += squares[:, j:j + shape[1]]
        return k + alpha / size * window

    def numpy_forward():
        return x * numpy_scale() ** np.float32(-beta)

    def numpy_backward(scale, out):
        ratio = np.pad(dy * out / scale, ((0, 0), (size - 1 - pre, pre), (0, 0)))
        window = ratio[:, :shape[1]].copy()
        for j in range(1, size):
            window += ratio[:, j:j + shape[1]]
        return dy * scale ** np.float32(-beta) - 2 * alpha * beta / size * x * window

    def ours_forward():
        ops.lrn_across_forward(x, size, alpha, beta, k, scale, out)

    def ours_forward_backward():
        ours_forward()
        ops.lrn_across_backward(x, out, scale, dy, size, alpha, beta, dx)

    def numpy_forward_backward():
        numpy_scaled = numpy_scale()
        return numpy_backward(numpy_scaled, x * numpy_scaled ** np.float32(-beta))
    ours_forward()
    torch_cases = [None, None]
    if torch is not None:
        xt = torch.from_numpy(x4).requires_grad_()
        dyt = torch.from_numpy(dy4)

        def torch_forward_backward():
            y = F.local_response_norm(xt, size, alpha, beta, k)
            (grad,) = torch.autograd.grad(y, xt, dyt)
            return grad
        torch_cases = [lambda: F.local_response_norm(xt.detach(), size, alpha, beta, k),
                       torch_forward_backward]
    return [(f"{name} LRN fwd", ours_forward, numpy_forward, torch_cases[0]),
            (f"{name} LRN fwd+bwd", ours_forward_backward, numpy_forward_backward,
             torch_cases[1])]


def batch_norm_cases(name, shape):
    """BatchNorm's statistics, its gradient sums and its per-channel affine map.

    PyTorch's statistics are its own batch-norm kernel's (``batch_norm_update_stats``,
    what ``F.batch_norm(training=True)`` runs first on the CPU): mean and 1/std.
    """
    x4, dy4 = rand(*shape), rand(*shape)
    x, dy = x4.reshape(shape[0], shape[1], -1), dy4.reshape(shape[0], shape[1], -1)
    out = np.empty_like(x)
    scale, shift = rand(shape[1]), rand(shape[1])
    column = (1, -1, 1)
    torch_cases = [None] * 3
    if torch is not None:
        xt, dyt, outt = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(out)
        scale_t = torch.from_numpy(scale).view(column)
        shift_t = torch.from_numpy(shift).view(column)
        torch_cases = [
            lambda: torch.ops.aten.batch_norm_update_stats(torch.from_numpy(x4), None, None,
                                                           0.1),
            lambda: (dyt.sum(dim=(0, 2)), (dyt * xt).sum(dim=(0, 2))),
            lambda: torch.addcmul(shift_t, xt, scale_t, out=outt)]
    return [
        (f"{name} channel mean/var", lambda: ops.channel_mean_var(x),
         lambda: (x.mean(axis=(0, 2)), x.var(axis=(0, 2))), torch_cases[0]),
        (f"{name} channel sums", lambda: ops.channel_sums(dy, x),
         lambda: (dy.sum(axis=(0, 2)), np.einsum("ncs,ncs->c", dy, x)), torch_cases[1]),
        (f"{name} channel affine", lambda: ops.channel_linear([(x, scale)], out, shift=shift),
         lambda: np.add(x * scale.reshape(column), shift.reshape(column), out=out),
         torch_cases[2]),
    ]


def all_cases():
    return (pool_cases("CIFAR pool1 b100", (100, 32, 32, 32), 3, 2)
            + pool_cases("AlexNet pool1 b16", (16, 96, 55, 55), 3, 2)
            + pool_cases("CIFAR pool2 b100", (100, 32, 16, 16), 3, 2)
            + relu_cases("CIFAR relu1 b100", (100, 32, 32, 32))
            + relu_cases("AlexNet relu1 b16", (16, 96, 55, 55))
            + sum_cases("ResNet res2a b8", (8, 256, 56, 56))
            + softmax_cases("AlexNet prob b16", (16, 1000, 1))
            + softmax_cases("FCN-like score b1", (1, 21, 128 * 128))
            + lrn_cases("AlexNet norm1 b16", (16, 96, 55, 55))
            + batch_norm_cases("ResNet bn b8", (8, 64, 56, 56)))


def best_alternating(functions, repeats):
    """Best seconds of each function (None stays None), measured in turns."""
    live = [f for f in functions if f is not None]
    for function in live:
        function()
    best = {id(f): math.inf for f in live}
    for _ in range(repeats):
        for function in live:
            best[id(function)] = min(best[id(function)], timed(function))
    return [best[id(f)] if f is not None else None for f in functions]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(describe_threads())
    if torch is None:
        print("PyTorch not installed: its columns are skipped")
    else:
        torch.set_num_threads(numba.get_num_threads())
        print(f"PyTorch {torch.__version__}: {torch.get_num_threads()} threads")
    print("| kernel | ours ms | numpy ms | torch ms | numpy / ours | torch / ours |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = {"numpy": [], "torch": []}
    for label, ours, numpy_way, torch_way in all_cases():
        ours_s, numpy_s, torch_s = best_alternating([ours, numpy_way, torch_way], args.repeats)
        ratios["numpy"].append(numpy_s / ours_s)
        cells = [f"{ours_s * 1e3:.3f}", f"{numpy_s * 1e3:.3f}", "-",
                 f"{numpy_s / ours_s:.2f}", "-"]
        if torch_s is not None:
            ratios["torch"].append(torch_s / ours_s)
            cells[2], cells[4] = f"{torch_s * 1e3:.3f}", f"{torch_s / ours_s:.2f}"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    for baseline, values in ratios.items():
        if values:
            geo = float(np.exp(np.mean(np.log(values))))
            print(f"geometric mean {baseline} / ours: {geo:.2f} over {len(values)} kernels")


if __name__ == "__main__":
    main()
