"""Convolution and InnerProduct forward+backward against the machine's float32 GEMM.

``python bench/bench_gemm_conv.py`` runs each layer below (shapes of LeNet,
CIFAR10-quick, AlexNet and ResNet-50), records the GEMMs it made through the
core-group scheduler, times ``numpy.matmul`` on random matrices of exactly
those sizes in the same run, and prints GEMM time / layer time: the fraction
of the machine's GEMM throughput the layer reaches (target >= 0.7).  The
GEMM time is the better of two ways to run numpy's matmul on the same thread
count: BLAS's own threads, or one single-threaded call per thread on a share
of C (what the scheduler does).  Best of ``--repeats``, measured alternately.
"""
import argparse
import time

import numpy as np
from google.protobuf import text_format

from pycaffe_mct.blob import Blob
from threadpoolctl import threadpool_limits

from pycaffe_mct.cg import accounting, scheduler
from pycaffe_mct.layer import create_layer
from pycaffe_mct.proto import caffe_pb2

from bench_common import best_seconds, describe_threads  # noqa: E402  (a sibling script)

CASES = [  # name, layer text, bottom shape
    ("LeNet conv1 b64", "type: 'Convolution' convolution_param { num_output: 20 kernel_size: 5 }",
     (64, 1, 28, 28)),
    ("LeNet conv2 b64", "type: 'Convolution' convolution_param { num_output: 50 kernel_size: 5 }",
     (64, 20, 12, 12)),
    ("CIFAR conv2 b100", "type: 'Convolution' convolution_param { num_output: 32 "
     "kernel_size: 5 pad: 2 }", (100, 32, 16, 16)),
    ("AlexNet conv1 b16", "type: 'Convolution' convolution_param { num_output: 96 "
     "kernel_size: 11 stride: 4 }", (16, 3, 227, 227)),
    ("AlexNet conv2 b16 g2", "type: 'Convolution' convolution_param { num_output: 256 "
     "kernel_size: 5 pad: 2 group: 2 }", (16, 96, 27, 27)),
    ("AlexNet conv3 b16", "type: 'Convolution' convolution_param { num_output: 384 "
     "kernel_size: 3 pad: 1 }", (16, 256, 13, 13)),
    ("ResNet 3x3 b8", "type: 'Convolution' convolution_param { num_output: 64 "
     "kernel_size: 3 pad: 1 bias_term: false }", (8, 64, 56, 56)),
    ("ResNet 1x1 b8", "type: 'Convolution' convolution_param { num_output: 256 "
     "kernel_size: 1 bias_term: false }", (8, 64, 56, 56)),
    ("LeNet ip1 b64", "type: 'InnerProduct' inner_product_param { num_output: 500 }",
     (64, 50, 4, 4)),
    ("AlexNet fc6 b16", "type: 'InnerProduct' inner_product_param { num_output: 4096 }",
     (16, 256, 6, 6)),
    ("ResNet fc1000 b8", "type: 'InnerProduct' inner_product_param { num_output: 1000 }",
     (8, 2048, 1, 1)),
]
FILLERS = "weight_filler { type: 'gaussian' std: 0.01 } bias_filler { type: 'constant' }"


def make_layer(text, shape):
    """A set-up layer with random bottom data and top diff; returns (layer, bottom, top)."""
    param = caffe_pb2.LayerParameter()
    text = text.replace(" }", f" {FILLERS} }}", 1) if "bias_term" not in text else \
        text.replace(" }", " weight_filler { type: 'gaussian' std: 0.01 } }", 1)
    text_format.Parse(f"name: 'bench' bottom: 'x' top: 'y' {text}", param)
    layer = create_layer(param)
    bottom, top = [Blob(shape)], [Blob()]
    layer.setup(bottom, top)
    rng = np.random.default_rng(0)
    bottom[0].data[...] = rng.standard_normal(shape, dtype=np.float32)
    top[0].diff[...] = rng.standard_normal(top[0].shape, dtype=np.float32)
    return layer, bottom, top


def layer_pass(layer, bottom, top):
    layer.forward(bottom, top)
    layer.backward(top, [True], bottom)


def gemm_sizes(layer, bottom, top):
    """(m, n, k) of every GEMM one forward+backward of the layer makes."""
    with accounting.recording() as plans:
        layer_pass(layer, bottom, top)
    return [(p.details["m"], p.details["n"], p.details["k"]) for p in plans
            if p.kernel == "gemm"]


def blas_threads_pass(operands, threads):
    """numpy's GEMM with BLAS on ``threads`` threads."""
    with threadpool_limits(threads, user_api="blas"):
        for a, b, c in operands:
            np.matmul(a, b, out=c)


def shares_pass(operands):
    """numpy's GEMM as one single-threaded BLAS call per host thread on a share of C's rows
    (the scheduler's way, with BLAS where the scheduler may take its own kernel)."""
    host = scheduler.EXECUTORS["fast"].host
    for a, b, c in operands:
        scheduler._split_rows(host, a, b, c, scheduler._numpy_matmul)


# OpenBLAS's own threads spin for a while after a call before they sleep; timed then, the
# host threads of the layer and of the shares would share their cores with them.  (Each
# timed call follows an untimed one: the first call after a pause ran up to 1.6x slower.)
BLAS_SPIN_SECONDS = 0.3


def measure(name, text, shape, repeats):
    layer, bottom, top = make_layer(text, shape)
    sizes = gemm_sizes(layer, bottom, top)
    rng = np.random.default_rng(1)
    operands = [(rng.standard_normal((m, k), dtype=np.float32),
                 rng.standard_normal((k, n), dtype=np.float32),
                 np.empty((m, n), np.float32)) for m, n, k in sizes]
    threads = scheduler.gemm_threads()
    blas_threads_pass(operands, threads)
    time.sleep(BLAS_SPIN_SECONDS)
    layer_s = blas_s = shares_s = float("inf")
    for _ in range(repeats):            # alternate so all see the same machine load
        layer_s = min(layer_s, best_seconds(lambda: layer_pass(layer, bottom, top), 1))
        shares_s = min(shares_s, best_seconds(lambda: shares_pass(operands), 1))
        blas_s = min(blas_s, best_seconds(lambda: blas_threads_pass(operands, threads), 1))
        time.sleep(BLAS_SPIN_SECONDS)
    flops = sum(2 * m * n * k for m, n, k in sizes)
    return layer_s, blas_s, shares_s, flops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(describe_threads())
    print("| layer | GEMM GFLOP | layer ms | matmul ms, BLAS threads | matmul ms, shares "
          "| layer GFLOP/s | fraction of best matmul |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    fractions = []
    for name, text, shape in CASES:
        layer_s, blas_s, shares_s, flops = measure(name, text, shape, args.repeats)
        fractions.append(min(blas_s, shares_s) / layer_s)
        print(f"| {name} | {flops / 1e9:.3f} | {layer_s * 1e3:.2f} | {blas_s * 1e3:.2f} "
              f"| {shares_s * 1e3:.2f} | {flops / layer_s / 1e9:.1f} | {fractions[-1]:.2f} |",
              flush=True)
    geo = float(np.exp(np.mean(np.log(fractions))))
    print(f"geometric mean fraction: {geo:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
