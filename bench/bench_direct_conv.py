"""Direct convolution (``pycaffe_mct/cg/ops/direct.py``) against im2col + GEMM and PyTorch CPU.

``python bench/bench_direct_conv.py [--repeats 10] [--rounds 3]`` times, on the
convolutions the direct kernels take (CIFAR10-quick's three at batch 100, a 64-channel 3x3
one), the forward, the input gradient and the filter gradient three ways: ours as the layers
run it (direct), ours with ``im2col_only`` (im2col + GEMM, Winograd's path turned off too),
and PyTorch's ``conv2d`` and its autograd (skipped where torch is not installed), all on
numba's thread count.  Each way runs ``--repeats`` times in a block after a warm-up call
(PyTorch's OpenMP threads spin for a while after each call, as its users have them, and
would slow whatever ran next), the blocks take turns for ``--rounds``, and the best call
counts.  Ratios are baseline time / ours: above 1 means the direct kernels are faster.
"""
import argparse
import importlib.util
from pathlib import Path


def _choose_blas_kernel():
    """pycaffe_mct's choice of OpenBLAS kernels for this CPU (``pycaffe_mct/blas_kernel.py``),
    made before torch loads numpy, without importing the package (see below)."""
    path = Path(__file__).resolve().parents[1] / "pycaffe_mct" / "blas_kernel.py"
    spec = importlib.util.spec_from_file_location("blas_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.choose()


_choose_blas_kernel()
# torch next: importing pycaffe_mct sets GOMP_SPINCOUNT (or OMP_WAIT_POLICY) for numba's
# OpenMP (cg/__init__.py), and torch's own OpenMP runtime, loaded later, would read it too.
try:
    import torch
except ImportError:
    torch = None

import numba
import numpy as np

from pycaffe_mct.cg.ops import convolution, direct

from bench_common import best_seconds, describe_threads  # noqa: E402  (a sibling script)

CASES = [  # name, x shape (N, C, H, W), output channels, kernel side, padding
    ("CIFAR10-quick conv1", (100, 3, 32, 32), 32, 5, 2),
    ("CIFAR10-quick conv2", (100, 32, 16, 16), 32, 5, 2),
    ("CIFAR10-quick conv3", (100, 32, 8, 8), 64, 5, 2),
    ("3x3, 64 channels, 16x16", (16, 64, 16, 16), 64, 3, 1),
]


def ours(x, weight, dy, window, part):
    """The call of ``part`` (forward / input gradient / filter gradient) the layer makes."""
    y, dx, weight_diff = np.empty(dy.shape, np.float32), np.empty_like(x), np.zeros_like(weight)
    if part == "forward":
        return lambda: convolution.convolve(x, weight, window, y=y)
    if part == "input gradient":
        return lambda: convolution.convolve_transpose(dy, weight, window, dx=dx)
    return lambda: convolution.convolve_transpose(dy, weight, window, x=x, weight_diff=weight_diff)


def by_im2col(call):
    def run():
        with convolution.im2col_only():
            call()
    return run


def theirs(x, weight, dy, pad, part):
    if torch is None:
        return None
    xt, wt, gt = (torch.from_numpy(a) for a in (x, weight, dy))
    if part == "forward":
        return lambda: torch.nn.functional.conv2d(xt, wt, padding=pad)
    xt.requires_grad_(part == "input gradient")
    wt.requires_grad_(part == "filter gradient")
    y = torch.nn.functional.conv2d(xt, wt, padding=pad)
    wanted = xt if part == "input gradient" else wt
    return lambda: torch.autograd.grad(y, wanted, gt, retain_graph=True)


def best_in_turns(functions, repeats, rounds):
    """Best seconds of each function (None stays None): blocks of ``repeats`` calls that
    take turns for ``rounds``."""
    best = [None if f is None else float("inf") for f in functions]
    for _ in range(rounds):
        for i, function in enumerate(functions):
            if function is not None:
                best[i] = min(best[i], best_seconds(function, repeats))
    return best


def arguments_and_header(argv, description):
    """--repeats and --rounds from argv; prints the thread settings, torch's included."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(describe_threads())
    if torch is not None:
        torch.set_num_threads(numba.get_num_threads())
        print(f"torch {torch.__version__}: {torch.get_num_threads()} threads")
    else:
        print("torch not installed: no PyTorch column")
    return args


def random_operands(rng, shape, outputs, window):
    """x, weight and top gradient dy of a convolution of x (``shape``) to ``outputs``."""
    x = rng.standard_normal(shape, dtype=np.float32)
    weight = rng.standard_normal((outputs, shape[1], *window.kernel), dtype=np.float32)
    dy = rng.standard_normal((shape[0], outputs, *window.output_hw(*shape[2:])),
                             dtype=np.float32)
    return x, weight, dy


def main(argv=None):
    args = arguments_and_header(argv, __doc__.splitlines()[0])
    print("| convolution | part | direct ms | im2col ms | PyTorch ms | im2col / direct "
          "| PyTorch / direct |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for name, shape, outputs, side, pad in CASES:
        window = convolution.Window((side, side), (pad, pad))
        x, weight, dy = random_operands(rng, shape, outputs, window)
        assert direct.applies(window, shape[1], outputs, dy.shape[2:]), name
        for part in ("forward", "input gradient", "filter gradient"):
            if part == "input gradient" and not direct.applies_transpose(
                    window, shape[1], outputs, shape[2:]):
                continue
            call = ours(x, weight, dy, window, part)
            mine, im2col, torch_s = best_in_turns(
                [call, by_im2col(call), theirs(x, weight, dy, pad, part)], args.repeats,
                args.rounds)
            torch_cells = ("-", "-") if torch_s is None else (f"{torch_s * 1e3:.2f}",
                                                              f"{torch_s / mine:.2f}")
            print(f"| {name} | {part} | {mine * 1e3:.2f} | {im2col * 1e3:.2f} | "
                  f"{torch_cells[0]} | {im2col / mine:.2f} | {torch_cells[1]} |")


if __name__ == "__main__":
    main()
