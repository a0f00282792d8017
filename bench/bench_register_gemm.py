"""The register-blocked GEMM (``pycaffe_mct/cg/register_gemm.py``) against numpy's matmul.

``python bench/bench_register_gemm.py [--repeats 200]`` times both on one thread (BLAS held to
one thread, as inside the scheduler's lanes) on the GEMM shapes of convolution chunks, best of
``--repeats`` each, and prints GFLOP/s and numpy time / ours (above 1: ours is faster).
"""
import argparse

import pycaffe_mct  # noqa: F401  (before numpy: it picks OpenBLAS's kernels for this CPU)
import numpy as np
from threadpoolctl import threadpool_limits

from pycaffe_mct.cg import register_gemm

from bench_common import best_seconds  # noqa: E402  (a sibling script)

SHAPES = [  # name, (m, k, n): out (m x n) = left (m x k) @ right (k x n)
    ("CIFAR10-quick conv1 forward, 1 image", (32, 75, 1024)),
    ("CIFAR10-quick conv2 forward, 2 images", (32, 800, 512)),
    ("CIFAR10-quick conv2 input gradient", (800, 32, 512)),
    ("CIFAR10-quick conv3 forward, 8 images", (64, 800, 512)),
    ("ResNet-50 1x1 64 -> 256, 56x56", (256, 64, 3136)),
    ("ResNet-50 3x3 64 -> 64, 56x56", (64, 576, 3136)),
    ("the longest inner dimension taken", (64, 1024, 512)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| GEMM | m x k x n | numpy GFLOP/s | ours GFLOP/s | numpy / ours time |")
    print("|---|---|---:|---:|---:|")
    with threadpool_limits(1, user_api="blas"):
        for name, (m, k, n) in SHAPES:
            left = rng.standard_normal((m, k), dtype=np.float32)
            right = rng.standard_normal((k, n), dtype=np.float32)
            out = np.empty((m, n), np.float32)
            assert register_gemm.applies(left, right, out), name
            ours = best_seconds(lambda: register_gemm.multiply(left, right, out), args.repeats)
            blas = best_seconds(lambda: np.matmul(left, right, out=out), args.repeats)
            flops = 2.0 * m * k * n
            print(f"| {name} | {m} x {k} x {n} | {flops / blas / 1e9:.1f} | "
                  f"{flops / ours / 1e9:.1f} | {blas / ours:.2f} |")


if __name__ == "__main__":
    main()
