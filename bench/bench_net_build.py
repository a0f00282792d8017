"""Net construction time against depth: is the cost per layer constant?

``python bench/bench_net_build.py`` builds nets of 1x1 convolution + in-place
ReLU blocks (the shape of tests/reliability/test_net_scale.py) at several
depths, best of ``--repeats`` builds each, and prints the seconds, the cost per
layer and that cost relative to the shallowest net's, measured in the same run
(1.0 everywhere means linear; a quadratic build doubles it with every row).
"""
import argparse
import gc
import time

import pycaffe_mct as caffe
from pycaffe_mct.proto import caffe_pb2

DEPTHS = (625, 1250, 2500, 5000)          # layers, Input not counted


def deep_net(layers):
    net = caffe_pb2.NetParameter(name="deep")
    net.layer.add(name="data", type="Input", top=["x0"]).input_param.shape.add(dim=[1, 2, 2, 2])
    for i in range(layers // 2):
        conv = net.layer.add(name=f"conv{i}", type="Convolution", bottom=[f"x{i}"],
                             top=[f"x{i + 1}"])
        conv.convolution_param.num_output = 2
        conv.convolution_param.kernel_size.append(1)
        net.layer.add(name=f"relu{i}", type="ReLU", bottom=[f"x{i + 1}"], top=[f"x{i + 1}"])
    return net


def best_seconds(param, repeats):
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        begin = time.perf_counter()
        caffe.Net(param, caffe.TEST)
        best = min(best, time.perf_counter() - begin)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    best_seconds(deep_net(50), 1)          # imports and first-use costs out of the table
    print(f"{'layers':>7} {'seconds':>8} {'us/layer':>9} {'vs first':>9}")
    first = None
    for layers in DEPTHS:
        per_layer = best_seconds(deep_net(layers), args.repeats) / layers
        first = first or per_layer
        print(f"{layers:>7} {per_layer * layers:>8.3f} {per_layer * 1e6:>9.1f} "
              f"{per_layer / first:>9.2f}")


if __name__ == "__main__":
    main()
