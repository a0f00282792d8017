"""A net's compute cost on one core group, read off the emulator's per-layer plan.

The net is built from a deploy prototxt (Input layers) with its batch set to
the profiling batch and ``force_backward`` on, so every layer's forward and
backward kernels are planned; ``pycaffe_mct.commands.profile.profile_net`` then
gives each layer's modelled core-group seconds at SW26010's figures.
"""
from contextlib import nullcontext
from dataclasses import dataclass

from .. import net_passes
from ..cg.ops import convolution
from ..commands.profile import profile_net
from ..errors import NetError
from ..layer import TRAIN
from ..net import Net
from ..proto import caffe_pb2
from ..proto_io import read_prototxt

FLOAT_BYTES = 4


def deploy_param(path, batch):
    """The prototxt at ``path`` with every Input layer's first dimension set to ``batch``."""
    param = net_passes.upgrade(read_prototxt(path, caffe_pb2.NetParameter()), path)
    inputs = [layer for layer in param.layer if layer.type == "Input"]
    readers = [layer for layer in param.layer
               if not layer.bottom and layer.type not in ("Input", "DummyData")]
    if readers or not inputs:
        names = ", ".join(f"'{layer.name}' ({layer.type})" for layer in readers) or "none"
        raise NetError(f"{path}: scale needs a deploy net whose data comes from Input layers "
                       f"(layers reading data: {names})")
    for layer in inputs:
        for shape in layer.input_param.shape:
            shape.dim[0] = batch
    param.force_backward = True
    return param


def param_bytes(net):
    """Bytes of the learnable parameters (each shared blob counted once), float32."""
    return FLOAT_BYTES * sum(blob.count for blob in net.learnable_params)


# The plan's time is affine in the batch (GEMM columns grow with it; the weights'
# DMA traffic does not): AlexNet's plan at 4 and 16 images predicts its plan at 32
# to 0.1%, and probes at 2 and 8 give its plan at 128 within 0.2% of probes at 4
# and 16.  So two small profiles stand in for one at the full global batch.
PROBE_BATCHES = (2, 8)


@dataclass(frozen=True)
class ProfiledCompute:
    """One core group's modelled forward+backward seconds on a share of the global batch.

    ``fixed + per_image * b`` is the plan's time for a batch of b images; a
    share of ``images`` of the global batch costs that share of the global
    batch's plan, so p core groups split the global batch's work p ways.
    """

    fixed: float
    per_image: float
    global_batch: int
    flops_per_image: float
    layers: tuple = ()           # (name, type, modelled seconds at the largest probe)
    forward_fraction: float = 1 / 3    # the forward pass's share of forward+backward
    classes: int = 0                   # channels of the net's first output (its logits)

    def at_batch(self, batch):
        return self.fixed + self.per_image * batch

    def __call__(self, images):
        return self.at_batch(self.global_batch) * images / self.global_batch

    def plan_flops_per_s(self):
        """The rate the plan sustains on the global batch."""
        return self.flops_per_image * self.global_batch / self.at_batch(self.global_batch)

    def unplanned_layers(self):
        """Layers whose kernels the emulator does not plan (modelled at 0 s)."""
        return [name for name, kind, seconds in self.layers
                if seconds == 0.0 and kind not in ("Input", "Split", "Flatten", "Reshape")]


def _profile(path, batch, im2col_only=False):
    net = Net(deploy_param(path, batch), TRAIN)
    with convolution.im2col_only() if im2col_only else nullcontext():
        records = profile_net(net, iterations=0)     # the planned pass only, no host timing
    return records, param_bytes(net), _classes(net)


def _classes(net):
    """The channel count of the net's first output (a classifier's class count)."""
    shape = net.blobs[net.outputs[0]].shape if net.outputs else ()
    return int(shape[1]) if len(shape) > 1 else 0


def profile_compute(path, global_batch, im2col_only=False):
    """(ProfiledCompute, parameter bytes) of the deploy net at ``path``; convolutions as on
    the host (Winograd, the single-channel path), or with ``im2col_only`` all by im2col +
    GEMM (the paper's software)."""
    probes = sorted({min(b, global_batch) for b in PROBE_BATCHES})
    seconds = []
    for batch in probes:
        records, n_bytes, classes = _profile(path, batch, im2col_only)
        seconds.append(sum(r.cg_seconds for r in records))
    if len(probes) == 1:                         # the global batch itself was profiled
        fixed, per_image = 0.0, seconds[0] / probes[0]
    else:
        per_image = (seconds[1] - seconds[0]) / (probes[1] - probes[0])
        fixed = seconds[1] - per_image * probes[1]
    layers = tuple((r.name, r.type, r.cg_seconds) for r in records)
    flops = sum(r.flops for r in records) / probes[-1]
    forward = sum(r.forward.seconds for r in records) / seconds[-1]
    return ProfiledCompute(fixed, per_image, global_batch, flops, layers, forward,
                           classes), n_bytes
