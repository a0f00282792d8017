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

Then, unless ``--skip-torch`` or torch is not installed, the same step in
PyTorch (the architecture and weights of our net, written as in
``bench_nets_vs_torch.py``, the same batch and random data) measured the same
way in a process of its own: peak RSS growth from just before its parameters
are created over ``iterations`` forward + backward passes.
"""
import argparse
import importlib.metadata
import importlib.util
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# The environment as the user gave it (importing pycaffe_mct adds OpenMP settings of its own).
ENVIRONMENT_BEFORE_PYCAFFE_MCT = dict(os.environ)
if "--torch-worker" in sys.argv:
    import torch  # before pycaffe_mct, as a PyTorch user's process would have it

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models/resnet50/train_val.prototxt"
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
    param = read_prototxt(str(MODEL), caffe_pb2.NetParameter())
    for layer in param.layer:
        if layer.type == "Data":
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add(dim=[batch, 3, size, size])
            layer.input_param.shape.add(dim=[batch])
    return Net(param, TRAIN)


def random_batch(batch, size):
    """The data and labels both sides train on."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    return data, rng.integers(0, 1000, batch)


def torch_peak_growth(batch, size, iterations):
    """(In the torch worker) peak RSS growth of ``iterations`` PyTorch training steps.

    The architecture comes from our net built at batch 1, before the baseline
    is taken, so that none of our own blobs is counted.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_nets_vs_torch import torch_step
    from pycaffe_mct.commands.timing import build_timing_net
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    architecture = build_timing_net(MODEL, batch=1, data_shape=(3, size, size))
    data, labels = random_batch(batch, size)
    inputs = {"data": data, "label": labels.astype(np.float32)}
    before = current_rss_bytes()
    step = torch_step(torch, architecture, inputs)
    for _ in range(iterations):
        step()
    return peak_rss_bytes() - before


def torch_line(args):
    """The torch worker's result line, or why there is none."""
    if importlib.util.find_spec("torch") is None:
        return "  PyTorch                  not installed (pip install torch)"
    command = [sys.executable, __file__, "--torch-worker", "--batch", str(args.batch),
               "--size", str(args.size), "--iterations", str(args.iterations)]
    done = subprocess.run(command, env=ENVIRONMENT_BEFORE_PYCAFFE_MCT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"  PyTorch                  failed: {reason}"
    return f"  PyTorch peak RSS growth  {float(done.stdout) / 1024 ** 3:7.3f} GiB " \
           f"(torch {importlib.metadata.version('torch')}, its own process)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        print(torch_peak_growth(args.batch, args.size, args.iterations))
        return
    before = current_rss_bytes()
    net = train_net(args.batch, args.size)
    data, labels = random_batch(args.batch, args.size)
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
    if not args.skip_torch:
        print(torch_line(args), flush=True)


if __name__ == "__main__":
    main()
