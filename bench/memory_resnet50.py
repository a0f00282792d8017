"""Peak resident memory of ResNet-50 training iterations against the sum of its blobs.

    python bench/memory_resnet50.py [--batch 32] [--size 224] [--iterations 2] [--release-diffs]

Builds models/resnet50/train_val.prototxt (TRAIN) with its Data layer replaced
by an Input layer, runs forward + backward ``iterations`` times on random data,
and prints the peak RSS growth since just before the net was built, the bytes
of every Blob storage the net holds (activations, their diffs, parameters and
their diffs, layer-internal blobs such as BatchNorm's normalised copy; shared
storage counted once) by kind, with how much of each is resident (storage never
written, such as the data layer's diff, is not), and the overhead: peak growth /
resident blob bytes - 1.  Also checks that a second iteration allocates no new blob
storage (activations are allocated once per shape).  Every blob's diff is kept
after backward, as in Caffe and a pycaffe ``Net``; with ``--release-diffs`` the
step runs as ``pycaffe_mct train`` and ``mct_train`` run it (unless given
``--keep-diffs``), activation diffs needed at different times sharing storage
(``pycaffe_mct/diff_release.py``).

Then, unless ``--skip-torch`` or torch is not installed, the same step in
PyTorch (the architecture and weights of our net, written as in
``bench_nets_vs_torch.py``, the same batch and random data) measured the same
way in a process of its own: peak RSS growth from just before its parameters
are created over ``iterations`` forward + backward passes.
"""
import argparse
import ctypes
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
from pycaffe_mct.diff_release import release_diffs_once_used  # noqa: E402
from pycaffe_mct.layer import TRAIN  # noqa: E402
from pycaffe_mct.net import Net  # noqa: E402
from pycaffe_mct.proto import caffe_pb2  # noqa: E402
from pycaffe_mct.proto_io import read_prototxt  # noqa: E402

LIBC = ctypes.CDLL(None, use_errno=True)


def current_rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def start_peak_rss():
    """The current RSS, from which the kernel's peak (VmHWM) starts again.

    Not ``getrusage``'s ru_maxrss: a process started by one that has grown
    (the torch worker, started after our net ran) inherits the parent's peak
    through fork and exec, so its ru_maxrss began at our ~6 GB.
    """
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")                                    # Linux: reset the peak RSS
    return current_rss_bytes()


def peak_rss_bytes():
    """VmHWM: the peak RSS since ``start_peak_rss``."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024          # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def storages(net):
    """Every distinct storage array behind the net's blobs, by id, with what it holds."""
    named = [("activations", blob._data) for blob in net.blobs.values()]
    named += [("their diffs", blob._diff) for blob in net.blobs.values()]
    for facts in net.layer_facts:                  # anonymous tops
        named += [("activations", blob._data) for blob in facts.tops]
        named += [("their diffs", blob._diff) for blob in facts.tops]
    for layer in net.layers:
        for blob in layer.blobs:
            named += [("parameters and their diffs", blob._data),
                      ("parameters and their diffs", blob._diff)]
        for blob in (value for value in vars(layer).values() if isinstance(value, Blob)):
            named += [("layer-internal blobs", blob._data), ("layer-internal blobs", blob._diff)]
    found = {}
    for kind, storage in named:
        found.setdefault(id(storage.array), (kind, storage.array))
    return found


def resident_bytes(array):
    """Bytes of ``array``'s pages in memory (mincore), whole pages that overlap it."""
    page = resource.getpagesize()
    start = array.ctypes.data // page * page
    pages = -(-(array.ctypes.data + array.nbytes - start) // page)
    if array.nbytes == 0:
        return 0
    vector = (ctypes.c_ubyte * pages)()
    if LIBC.mincore(ctypes.c_void_p(start), ctypes.c_size_t(pages * page), vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return page * sum(flag & 1 for flag in vector)


def storage_lines(net):
    """Per kind of storage: bytes held, and bytes resident (written at least once)."""
    held, resident = {}, {}
    for kind, array in storages(net).values():
        held[kind] = held.get(kind, 0) + array.nbytes
        resident[kind] = resident.get(kind, 0) + resident_bytes(array)
    gib = 1024 ** 3
    return [f"    {kind:26s} {held[kind] / gib:7.3f} GiB, resident {resident[kind] / gib:6.3f}"
            for kind in held]


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
    before = start_peak_rss()
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
    parser.add_argument("--release-diffs", action="store_true",
                        help="activation diffs share storage (as the training commands run)")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        print(torch_peak_growth(args.batch, args.size, args.iterations))
        return
    data, labels = random_batch(args.batch, args.size)
    before = start_peak_rss()
    net = train_net(args.batch, args.size)
    if args.release_diffs:
        release_diffs_once_used(net)
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
    blob_bytes = sum(array.nbytes for _, array in storages(net).values())
    resident = sum(resident_bytes(array) for _, array in storages(net).values())
    growth = peak_rss_bytes() - before
    gib = 1024 ** 3
    mode = "activation diffs not kept" if args.release_diffs else "every diff kept"
    print(f"ResNet-50 TRAIN, batch {args.batch}, {args.size}x{args.size}, {mode}")
    print(f"  sum of blob storage      {blob_bytes / gib:7.3f} GiB")
    print("\n".join(storage_lines(net)))
    print(f"  scratch workspace        {workspace_bytes() / gib:7.3f} GiB")
    print(f"  peak RSS growth          {growth / gib:7.3f} GiB")
    print(f"  overhead beyond resident {100 * (growth / resident - 1):6.1f} % "
          f"(of {resident / gib:.3f} GiB resident blob storage)")
    if not args.skip_torch:
        print(torch_line(args), flush=True)


if __name__ == "__main__":
    main()
