"""Winograd F(4x4, 3x3) against F(2x2, 3x3), im2col + GEMM and PyTorch CPU.

``python bench/bench_winograd.py [--repeats 10] [--rounds 3]`` times, on 3x3 convolutions
(ResNet-50's 28x28 stage at batch 8, its 14x14 stage at batch 32, AlexNet's conv4 at batch
16, VGG-16's 56x56 stage; the last column says which tiling ``winograd.tiling`` gives),
the forward, the input gradient and the filter gradient four ways: F(4x4, 3x3), F(2x2, 3x3)
(the tiling forced), im2col + GEMM (``im2col_only``) and PyTorch's ``conv2d`` and its autograd (skipped
where torch is not installed), all on numba's thread count, in blocks that take turns as in
``bench_direct_conv.py``; the best call counts.  Ratios are other time / F(4x4, 3x3)'s:
above 1 means F(4x4, 3x3) is faster.
"""
from contextlib import contextmanager

from bench_direct_conv import (  # noqa: I100
    arguments_and_header, best_in_turns, by_im2col, ours, random_operands, theirs)

import numpy as np

from pycaffe_mct.cg.ops import convolution, winograd

CASES = [  # name, x shape (N, C, H, W), output channels
    ("ResNet-50 res3, batch 8", (8, 128, 28, 28), 128),
    ("ResNet-50 res4, batch 32", (32, 256, 14, 14), 256),
    ("AlexNet conv4, batch 16", (16, 384, 13, 13), 384),
    ("VGG-16 conv3, batch 8", (8, 256, 56, 56), 256),
]


@contextmanager
def tiled_by(tiling):
    """Every Winograd convolution meanwhile by ``tiling``."""
    before = winograd.F4_MIN_TILES, winograd.F4_MAX_WASTE
    winograd.F4_MIN_TILES = 0 if tiling is winograd.F4 else 1 << 62
    winograd.F4_MAX_WASTE = float("inf")
    try:
        yield
    finally:
        winograd.F4_MIN_TILES, winograd.F4_MAX_WASTE = before


def by_tiling(call, tiling):
    def run():
        with tiled_by(tiling):
            call()
    return run


def main(argv=None):
    args = arguments_and_header(argv, __doc__.splitlines()[0])
    print("| convolution | part | F(4x4) ms | F(2x2) ms | im2col ms | PyTorch ms | F(2x2) / F(4x4) "
          "| im2col / F(4x4) | PyTorch / F(4x4) | taken |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    rng = np.random.default_rng(0)
    for name, shape, outputs in CASES:
        window = convolution.Window((3, 3), (1, 1))
        x, weight, dy = random_operands(rng, shape, outputs, window)
        chosen = winograd.tiling(window, shape[1], outputs, shape[2:], shape[0])
        for part in ("forward", "input gradient", "filter gradient"):
            call = ours(x, weight, dy, window, part)
            f4, f2, im2col, torch_s = best_in_turns(
                [by_tiling(call, winograd.F4), by_tiling(call, winograd.F2), by_im2col(call),
                 theirs(x, weight, dy, 1, part)], args.repeats, args.rounds)
            torch_cells = ("-", "-") if torch_s is None else (f"{torch_s * 1e3:.2f}",
                                                              f"{torch_s / f4:.2f}")
            print(f"| {name} | {part} | {f4 * 1e3:.2f} | {f2 * 1e3:.2f} | {im2col * 1e3:.2f} | "
                  f"{torch_cells[0]} | {f2 / f4:.2f} | {im2col / f4:.2f} | {torch_cells[1]} | "
                  f"F({chosen.out}x{chosen.out}) |",
                  flush=True)


if __name__ == "__main__":
    main()
