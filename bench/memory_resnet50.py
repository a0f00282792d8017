"""Peak resident memory of ResNet-50 training iterations against the sum of its blobs.

    python bench/memory_resnet50.py [--batch 32] [--size 224] [--iterations 2]

Builds models/resnet50/train_val.prototxt (TRAIN) with its Data layer replaced
by an Input layer, runs forward + backward ``iterations`` times on random data,
and prints the peak RSS growth since just before the net was built, the bytes
of every Blob storage the net holds (activations, their diffs, parameters and
their diffs, layer-internal blobs such as BatchNorm's normalised copy and
in-place Scale's saved input; shared storage counted once), and the overhead:
peak growth / blob bytes - 1.  Also checks that a second iteration allocates no
new blob storage (activations are allocated once per shape).
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pycaffe_mct.blob import Blob  # noqa: E402
from pycaffe_mct.cg.workspace import workspace_bytes  # noqa: E402
from pycaffe_mct.layer import TRAIN  # noqa: E402
from pycaffe_mct.net import Net  # noqa: E402
from pycaffe_mct.proto import caffe_pb2  # noqa: E402
from pycaffe_mct.proto_io import read_prototxt  # noqa: E402


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def current_rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def storages(net):
    """Every distinct storage array behind the net's blobs, by id."""
    blobs = list(net.blobs.values())
    for layer in net.layers:
        blobs += layer.blobs
        blobs += [value for value in vars(layer).values() if isinstance(value, Blob)]
    for facts in net.layer_facts:
        blobs += facts.tops
    found = {}
    for blob in blobs:
        for storage in (blob._data, blob._diff):
            found[id(storage.array)] = storage.array
    return found


def train_net(batch, size):
    param = read_prototxt(str(ROOT / "models/resnet50/train_val.prototxt"),
                          caffe_pb2.NetParameter())
    for layer in param.layer:
        if layer.type == "Data":
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add(dim=[batch, 3, size, size])
            layer.input_param.shape.add(dim=[batch])
    return Net(param, TRAIN)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    before = current_rss_bytes()
    net = train_net(args.batch, args.size)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    labels = rng.integers(0, 1000, args.batch)
    storage_ids = None
    for iteration in range(args.iterations):
        start = time.time()
        net.blobs["data"].data[...] = data
        net.blobs["label"].data[...] = labels
        net.clear_param_diffs()
        loss = net.forward_backward()
        found = storages(net)
        if storage_ids is not None and set(found) != storage_ids:
            print(f"iteration {iteration}: blob storage was reallocated")
        storage_ids = set(found)
        print(f"iteration {iteration}: loss {loss:.4f}, {time.time() - start:.1f} s")
    blob_bytes = sum(array.nbytes for array in storages(net).values())
    growth = peak_rss_bytes() - before
    gib = 1024 ** 3
    print(f"ResNet-50 TRAIN, batch {args.batch}, {args.size}x{args.size}")
    print(f"  sum of blob storage      {blob_bytes / gib:7.3f} GiB")
    print(f"  scratch workspace        {workspace_bytes() / gib:7.3f} GiB")
    print(f"  peak RSS growth          {growth / gib:7.3f} GiB")
    print(f"  overhead beyond blobs    {100 * (growth / blob_bytes - 1):6.1f} %")


if __name__ == "__main__":
    main()
