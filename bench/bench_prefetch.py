"""Prefetching: an iteration costs max(C, D), not C + D.

Two cases, each timed in this run with prefetching (data_param.prefetch 4: a
background thread) and without it (prefetch 0: the batch is read inside the
forward):
  1. LeNet on the digits LMDB with a reader made slower by real CPU work (zlib
     compression of a megabyte per pass, which like an image codec needs a core
     and releases the GIL), D ~ C;
  2. real JPEG decoding: an LMDB of encoded 256x256 JPEGs, random 224 crops and
     mirrors, feeding a small conv net.
C (compute: forward + backward of every layer after the data layer) and D
(producing one batch) are measured alone first.  On 2 cores the compute gets one
(NUMBA_NUM_THREADS=OMP_NUM_THREADS=1) and the prefetch thread the other; the
target is T(prefetch) <= 1.1 x max(C, D), against T(none) ~ C + D.

    python bench/bench_prefetch.py
"""
import os

for variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import io            # noqa: E402
import tempfile      # noqa: E402
import time          # noqa: E402
import zlib          # noqa: E402

import numpy as np  # noqa: E402
from bench_convert import photo_like, print_machine  # noqa: E402

import pycaffe_mct as caffe                                           # noqa: E402
from pycaffe_mct import rng                                           # noqa: E402
from pycaffe_mct.data import LMDBWriter, encoded_datum, key_for      # noqa: E402
from pycaffe_mct.proto import caffe_pb2                               # noqa: E402
from pycaffe_mct.proto_io import parse_prototxt                       # noqa: E402
from pycaffe_mct.tools.make_digits_dataset import make_digits_dataset  # noqa: E402

ITERATIONS = 15

LENET = """
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 }
  data_param { source: "%(source)s" batch_size: 64 backend: LMDB prefetch: %(depth)d } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

JPEG_NET = """
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { crop_size: 224 mirror: true scale: 0.00390625 mean_value: 110 }
  data_param { source: "%(source)s" batch_size: 8 backend: LMDB prefetch: %(depth)d } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 7 stride: 4 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "ip" type: "InnerProduct" bottom: "conv2" top: "ip"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def write_jpeg_lmdb(path, count=48, size=256):
    """Encoded JPEG Datums of photo-like scenes, so decoding costs what it does on photos."""
    generator = np.random.default_rng(0)
    with LMDBWriter(path) as writer:
        for i in range(count):
            buffer = io.BytesIO()
            photo_like(generator, size, size).save(buffer, "JPEG", quality=90)
            writer.put(key_for(i, f"scene{i}.jpg"),
                       encoded_datum(buffer.getvalue(), i % 10).SerializeToString())


def build(template, source, depth):
    rng.set_random_seed(1)
    text = template % {"source": source, "depth": depth}
    return caffe.Net(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TRAIN)


def seconds_per(action, n=ITERATIONS):
    action()                                  # warm-up (numba compiles, caches fill)
    start = time.perf_counter()
    for _ in range(n):
        action()
    return (time.perf_counter() - start) / n


# Incompressible-ish bytes for the reader's extra work: a sleeping reader would leave its
# core idle and show an overlap that a busy machine does not give.
WORK_PAYLOAD = np.random.default_rng(0).integers(0, 64, 1 << 20, dtype=np.uint8).tobytes()


def work_passes(seconds):
    """How many zlib passes over WORK_PAYLOAD take about ``seconds`` on this machine."""
    start = time.perf_counter()
    zlib.compress(WORK_PAYLOAD, 6)
    return max(1, round(seconds / (time.perf_counter() - start)))


def slow_down(layer, seconds):
    """Make the layer's batch production about ``seconds`` longer with real CPU work."""
    produce = layer.source.produce
    passes = work_passes(seconds)

    def slowed(index):
        for _ in range(passes):
            zlib.compress(WORK_PAYLOAD, 6)
        return produce(index)
    layer.prefetcher.produce = slowed
    layer.prefetcher.start(layer.next_batch)
    return slowed


def restart_then_time(net):
    """Seconds per iteration in steady state: batches queued while other timings ran are
    dropped, one iteration refills the pipeline, then ITERATIONS are timed."""
    layer = net.layers[0]
    layer.prefetcher.start(layer.next_batch)
    return seconds_per(net.forward_backward, ITERATIONS)


def run_case(name, template, source, extra_delay=None, rounds=3):
    """Time C, D, an iteration without and with prefetching; the best of ``rounds``
    interleaved rounds of each, so load from other processes hits all alike."""
    sync = build(template, source, depth=0)
    prefetched = build(template, source, depth=4)
    compute = seconds_per(lambda: (sync.forward_from_to(1), sync.backward_from_to()))
    delay = compute if extra_delay is None else extra_delay
    produce = slow_down(sync.layers[0], delay) if delay else sync.layers[0].source.produce
    if delay:
        slow_down(prefetched.layers[0], delay)
    counter = iter(range(10 ** 9))
    best = {"C": compute, "D": float("inf"), "none": float("inf"), "prefetch": float("inf")}
    for _ in range(rounds):
        timings = {"C": seconds_per(lambda: (sync.forward_from_to(1), sync.backward_from_to())),
                   "D": seconds_per(lambda: produce(next(counter))),
                   "none": seconds_per(sync.forward_backward),
                   "prefetch": restart_then_time(prefetched)}
        best = {key: min(best[key], value) for key, value in timings.items()}
    bound = max(best["C"], best["D"])
    print(f"{name}: C {best['C'] * 1e3:.1f} ms, D {best['D'] * 1e3:.1f} ms | no prefetch "
          f"{best['none'] * 1e3:.1f} ms = {best['none'] / (best['C'] + best['D']):.2f} x (C+D) "
          f"| prefetch {best['prefetch'] * 1e3:.1f} ms = {best['prefetch'] / bound:.2f} x "
          f"max(C,D) (target <= 1.10) | speed-up {best['none'] / best['prefetch']:.2f}x")
    sync.layers[0].close(), prefetched.layers[0].close()


def main():
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        make_digits_dataset(os.path.join(tmp, "digits"))
        run_case("slowed reader (LeNet, digits, batch 64)", LENET,
                 os.path.join(tmp, "digits", "train_lmdb"))
        write_jpeg_lmdb(os.path.join(tmp, "jpeg_lmdb"))
        run_case("JPEG decoding (256px JPEG -> crop 224 + mirror, batch 8)", JPEG_NET,
                 os.path.join(tmp, "jpeg_lmdb"), extra_delay=0)


if __name__ == "__main__":
    main()
