"""A training iteration (forward + backward) of our nets against PyTorch CPU.

``python bench/bench_nets_vs_torch.py [--repeats 3] [--rounds 3] [--nets lenet alexnet ...]``
builds each net from ``models/`` (data layers become random inputs, as in
``pycaffe_mct time``), builds the same architecture in PyTorch from our net's
own layers and weights, and prints the best time of both and ours / torch
(target <= 1.0): each round times ours (best of ``--repeats``), then torch, and
the ratio is the median over rounds, with its range over rounds in brackets.

Both sides time what a training iteration pays: ours zeroes the parameter
gradients (as the solver does every iteration) and runs forward + backward;
torch runs its forward + backward and drops the gradients (``grad = None``,
``zero_grad``'s default).  Torch is written as a PyTorch user writes it:
BatchNorm followed by Caffe's in-place Scale is one ``F.batch_norm`` with
weight and bias, an in-place Caffe ReLU is ``relu(inplace=True)``, an Eltwise
SUM with unit coefficients is ``a + b``.

Each side runs in a process of its own, as a user would run it: ours in this
one, which never imports torch, and torch in a child process (kept for the
whole run) started from the environment as it was before pycaffe_mct was
imported, so the OpenMP settings pycaffe_mct makes for itself (see
``pycaffe_mct/cg/__init__.py``) do not reach torch's.  Both use the same thread
count: numba, our GEMM shares and torch are set to the cores this process may
use (or OMP_NUM_THREADS); the header shows both sides' settings.

The last column is the share of this machine's float32 GEMM throughput
(numpy ``matmul`` of 2048x2048 matrices, measured in the same run) our whole
step reaches, counting only its convolution and inner-product FLOPs (forward,
weight gradient, and input gradient where the net propagates one; a Winograd
convolution at its direct FLOPs, see ``gemm_flops``).  Last, the
start-up time of a fresh process to its first LeNet iteration, with an empty
numba cache (cold) and then a filled one (warm).  Nets whose prototxt is
missing, or a missing torch, are skipped with a message.
"""
import argparse
import functools
import importlib.util
import operator
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The environment as the user gave it: importing pycaffe_mct adds OpenMP settings of its own.
ENVIRONMENT_BEFORE_PYCAFFE_MCT = dict(os.environ)
TORCH_WORKER = "--torch-worker" in sys.argv
if TORCH_WORKER:
    import torch  # before pycaffe_mct: see the module doc

# Ours: pycaffe_mct before numpy, as in the command-line tools, so that it picks OpenBLAS's
# kernels for this CPU before numpy loads them (pycaffe_mct/blas_kernel.py; the header shows
# the kernel).
import pycaffe_mct  # noqa: F401,E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from pycaffe_mct.commands.timing import build_timing_net
from pycaffe_mct.proto import caffe_pb2

from bench_common import (  # noqa: E402  (a sibling script)
    best_seconds, describe_environment, describe_threads, gemm_flops_per_second)

MODELS = Path(__file__).resolve().parents[1] / "models"
NETS = {  # name: (prototxt, batch, data shape C,H,W)
    "lenet": ("lenet/lenet_train_test.prototxt", 64, (1, 28, 28)),
    "cifar10_quick": ("cifar10_quick/train_val.prototxt", 100, (3, 32, 32)),
    "alexnet": ("alexnet/train_val.prototxt", 16, (3, 227, 227)),
    "resnet50": ("resnet50/train_val.prototxt", 8, (3, 224, 224)),
}
_POOL = caffe_pb2.PoolingParameter
_ELTWISE = caffe_pb2.EltwiseParameter


def threads():
    return int(os.environ.get("OMP_NUM_THREADS", len(os.sched_getaffinity(0))))


def limit_threads(count):
    """One thread budget for numba and our GEMM shares (torch gets the same below)."""
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))


# ---- the same net in PyTorch --------------------------------------------------

def _pair(values, default):
    values = list(values) or [default]
    return tuple(values) if len(values) == 2 else (values[0], values[0])


def _conv(torch, layer, inputs, weights):
    p = layer.param.convolution_param
    return torch.nn.functional.conv2d(
        inputs[0], weights[0], weights[1] if len(weights) > 1 else None,
        stride=(p.stride_h, p.stride_w) if p.stride_h else _pair(p.stride, 1),
        padding=(p.pad_h, p.pad_w) if p.pad_h else _pair(p.pad, 0),
        dilation=_pair(p.dilation, 1), groups=p.group)


def _pool(torch, layer, inputs, weights):
    F, x = torch.nn.functional, inputs[0]
    kernel, stride, pad = layer.kernel, layer.stride, layer.pad
    if layer.method == _POOL.MAX:
        return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)
    return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=True, count_include_pad=True)


def _inner_product(torch, layer, inputs, weights):
    x = inputs[0].flatten(layer.axis)
    return torch.nn.functional.linear(x, weights[0], weights[1] if len(weights) > 1 else None)


def _batch_norm(torch, layer, inputs, weights):
    """``weights``: running mean and variance, then the folded Scale's weight and bias."""
    return torch.nn.functional.batch_norm(inputs[0], *weights[:2], *weights[2:4], training=True,
                                          eps=layer.param.batch_norm_param.eps)


def _scale(torch, layer, inputs, weights):
    shape = (1, -1, 1, 1)
    y = inputs[0] * weights[0].reshape(shape)
    return y + weights[1].reshape(shape) if len(weights) > 1 else y


def _eltwise(torch, layer, inputs, weights):
    p = layer.param.eltwise_param
    if p.operation == _ELTWISE.PROD:
        return torch.prod(torch.stack(inputs), 0)
    if p.operation == _ELTWISE.MAX:
        return torch.amax(torch.stack(inputs), 0)
    coeffs = list(p.coeff) or [1.0] * len(inputs)
    if all(c == 1 for c in coeffs):
        return functools.reduce(operator.add, inputs)
    return functools.reduce(operator.add, (c * x for c, x in zip(coeffs, inputs)))


def _lrn(torch, layer, inputs, weights):
    p = layer.param.lrn_param
    return torch.nn.functional.local_response_norm(inputs[0], p.local_size, p.alpha, p.beta,
                                                   p.k)


def _relu(torch, layer, inputs, weights):
    in_place = list(layer.param.bottom) == list(layer.param.top)
    return torch.nn.functional.relu(inputs[0], inplace=in_place)


def _softmax_loss(torch, layer, inputs, weights):
    return torch.nn.functional.cross_entropy(inputs[0], inputs[1].long())


TORCH_LAYERS = {
    "Convolution": _conv,
    "Pooling": _pool,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Eltwise": _eltwise,
    "LRN": _lrn,
    "SoftmaxWithLoss": _softmax_loss,
    "ReLU": _relu,
    "Dropout": lambda torch, layer, inputs, weights: torch.nn.functional.dropout(
        inputs[0], layer.param.dropout_param.dropout_ratio),
    "Concat": lambda torch, layer, inputs, weights: torch.cat(
        inputs, layer.param.concat_param.axis),
    "Softmax": lambda torch, layer, inputs, weights: torch.softmax(inputs[0], 1),
}
PASS_THROUGH = {"Split", "Accuracy", "Silence"}


def scales_after_batch_norm(net):
    """{BatchNorm layer index: index of the Scale applied in place to its output}."""
    folded = {}
    for i, (layer, after) in enumerate(zip(net.layers, net.layers[1:])):
        if layer.type == "BatchNorm" and after.type == "Scale" and \
                net.bottom_names[after.name] == net.top_names[layer.name] and \
                len(after.blobs) == 2:
            folded[i] = i + 1
    return folded


def torch_parameters(torch, net):
    """Per layer, the tensors its torch function takes, and the learnable ones among them."""
    learnable = [[torch.tensor(b.data, requires_grad=True) for b in layer.blobs]
                 if layer.type != "BatchNorm" else [] for layer in net.layers]
    weights = [list(group) for group in learnable]
    for bn, scale in scales_after_batch_norm(net).items():
        weights[bn], weights[scale] = weights[scale], []
    for i, layer in enumerate(net.layers):
        if layer.type == "BatchNorm":
            channels = layer.blobs[0].data.shape[0]
            weights[i][:0] = [torch.zeros(channels), torch.ones(channels)]   # running stats
    return weights, [p for group in learnable for p in group]


def torch_step(torch, net, inputs=None):
    """A function running one forward+backward of ``net``'s architecture in torch.

    It returns the loss (to compare with our net's).  The Input layers' tops come
    from ``inputs`` (name: array) where given, else from the net's own blobs.
    """
    inputs = inputs or {}
    weights, learnable = torch_parameters(torch, net)
    folded_scales = set(scales_after_batch_norm(net).values())
    unsupported = {layer.type for layer in net.layers} - set(TORCH_LAYERS) - PASS_THROUGH \
        - {"Input"}
    if unsupported:
        raise KeyError(f"no torch equivalent for {sorted(unsupported)}")

    def step():
        blobs = {}
        for i, layer in enumerate(net.layers):
            bottoms = [blobs[name] for name in net.bottom_names[layer.name]]
            tops = net.top_names[layer.name]
            if layer.type == "Input":
                outputs = [torch.from_numpy(inputs.get(name, net.blobs[name].data))
                           for name in tops]
            elif layer.type in PASS_THROUGH or i in folded_scales:
                outputs = bottoms[:1] * len(tops)
            else:
                outputs = [TORCH_LAYERS[layer.type](torch, layer, bottoms, weights[i])]
            blobs.update(zip(tops, outputs))
        loss = functools.reduce(operator.add,
                                [blobs[name] for name in net.outputs if blobs[name].dim() == 0])
        loss.backward()
        for p in learnable:
            p.grad = None         # what optimizer.zero_grad() does by default
        return loss.item()
    return step


class TorchWorker:
    """A child process that times torch on request: one line "net repeats" in, seconds out.

    It starts from the environment saved before pycaffe_mct was imported here, and
    first describes its version and thread settings (lines up to an empty one).
    """

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, __file__, "--torch-worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=ENVIRONMENT_BEFORE_PYCAFFE_MCT)
        self.description = "\n".join(iter(lambda: self.process.stdout.readline().rstrip("\n"),
                                          ""))

    def seconds(self, name, repeats):
        self.process.stdin.write(f"{name} {repeats}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(answer or "the torch worker stopped")
        return float(answer)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def gemm_flops(net):
    """Floating-point operations of the convolutions and inner products in one training step.

    Each is a GEMM of 2 * (top elements) * (weights per output channel) FLOPs
    forward, as many for the weight gradient, and as many again for the input
    gradient when the net propagates one to its bottom.  A 3x3 convolution run
    by Winograd's F(2x2, 3x3) does fewer; it is counted at these direct-GEMM
    FLOPs all the same (the usual "effective" rate), as PyTorch's are.
    """
    total = 0
    for facts in net.layer_facts:
        if facts.layer.type in ("Convolution", "InnerProduct"):
            weights = facts.layer.blobs[0].data
            forward = 2 * facts.tops[0].count * (weights.size // weights.shape[0])
            total += forward * (2 + bool(facts.bottom_need_backward[0]))
    return total


def solver_iteration(net):
    """What the solver pays per iteration besides the update: zero the gradients, then run."""
    def step():
        net.clear_param_diffs()
        net.forward_backward()
    return step


def compare(name, repeats, rounds, worker, machine_flops):
    """A table row: best times of both, the median (and range) over rounds of ours / torch, %
    of GEMM peak.

    Each round times ours, then torch, so both see the same machine; on a
    shared machine the median ratio moves less than the times do.
    """
    prototxt, batch, shape = NETS[name]
    if not (MODELS / prototxt).is_file():
        return f"| {name} | skipped: models/{prototxt} not present | | | |"
    net = build_timing_net(MODELS / prototxt, batch=batch, data_shape=shape)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(best_seconds(solver_iteration(net), repeats))
        if worker is None:
            continue
        try:
            theirs.append(worker.seconds(name, repeats))
        except RuntimeError as exc:
            theirs = f"skipped: {exc}"
            break
    peak = f"{100 * gemm_flops(net) / min(ours) / machine_flops:.0f} %"
    if worker is None or isinstance(theirs, str):
        return f"| {name} (batch {batch}) | {min(ours) * 1e3:.1f} | " \
               f"{theirs or 'torch not installed'} | | {peak} |"
    ratios = [o / t for o, t in zip(ours, theirs)]
    return f"| {name} (batch {batch}) | {min(ours) * 1e3:.1f} | {min(theirs) * 1e3:.1f} | " \
           f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {peak} |"


def torch_worker():
    """(In the child process) answer TorchWorker's requests until stdin closes."""
    torch.set_num_threads(threads())
    backend = next((line for line in torch.__config__.parallel_info().splitlines()
                    if "parallel backend" in line), "")
    print(f"torch {torch.__version__} (own process): {torch.get_num_threads()} threads, "
          f"{torch.get_num_interop_threads()} inter-op threads; {backend.strip()}\n"
          f"torch side {describe_environment(ENVIRONMENT_BEFORE_PYCAFFE_MCT)}\n", flush=True)
    steps = {}
    for line in sys.stdin:
        name, repeats = line.split()
        try:
            if name not in steps:
                prototxt, batch, shape = NETS[name]
                net = build_timing_net(MODELS / prototxt, batch=batch, data_shape=shape)
                steps[name] = torch_step(torch, net)
            print(best_seconds(steps[name], int(repeats)), flush=True)
        except Exception as exc:  # noqa: BLE001  (reported to the parent as the row's reason)
            print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)


START_UP = """
import time
start = time.perf_counter()
from pycaffe_mct.commands.timing import build_timing_net
net = build_timing_net({model!r}, batch=64, data_shape=(1, 28, 28))
net.forward_backward()
print(time.perf_counter() - start)
"""


def start_up_seconds():
    """(cold, warm): a new process to its first LeNet iteration, empty then filled numba cache."""
    code = START_UP.format(model=str(MODELS / NETS["lenet"][0]))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [subprocess.run([sys.executable, "-c", code], env=env, check=True,
                               capture_output=True, text=True).stdout for _ in range(2)]
    return tuple(float(out.split()[-1]) for out in runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--skip-start-up", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternations of ours and torch per net (median ratio)")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker()
        return
    limit_threads(threads())
    worker = TorchWorker() if importlib.util.find_spec("torch") is not None else None
    print("ours: " + describe_threads())
    print(worker.description if worker else
          "torch is not installed (pip install torch): printing our times only")
    machine_flops = gemm_flops_per_second()
    print(f"float32 GEMM peak of this machine (numpy matmul 2048^3, best of 3): "
          f"{machine_flops / 1e9:.1f} GFLOP/s")
    print(f"best of {args.repeats} per round, {args.rounds} rounds; "
          "ratio: median (range) over rounds")
    print("| net | ours ms | torch ms | ours / torch | ours: conv+IP GFLOP/s / GEMM peak |")
    print("|---|---:|---:|---:|---:|")
    np.random.seed(0)
    for name in args.nets:
        print(compare(name, args.repeats, args.rounds, worker, machine_flops), flush=True)
    if worker is not None:
        worker.close()
    if not args.skip_start_up:
        cold, warm = start_up_seconds()
        print(f"start-up to the first LeNet iteration: cold (empty numba cache) {cold:.1f} s, "
              f"warm {warm:.1f} s")


if __name__ == "__main__":
    main()
