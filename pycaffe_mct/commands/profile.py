"""Per-layer profile of a net: host milliseconds and modelled core-group cost.

``profile_net(net, iterations)`` runs one recorded forward/backward pass (its
kernel plans give the core-group figures; it also warms caches, as ``caffe
time`` does with its initial pass), then ``iterations`` timed passes layer by
layer with recording off, so host times carry no accounting.
"""
import time
from dataclasses import dataclass, field

from ..cg import accounting
from ..cg.accounting import CallSummary
from ..cg.spec import SW26010, CoreGroupSpec  # noqa: F401  (the scaling model's entry point)


def _both(name):
    """A property: forward's plus backward's ``name``."""
    return property(lambda self: getattr(self.forward, name) + getattr(self.backward, name),
                    doc=f"forward plus backward {name}")


@dataclass
class LayerProfile:
    """One layer's figures per iteration; forward and backward kept apart."""

    name: str
    type: str
    forward_ms: float = 0.0
    backward_ms: float = 0.0
    forward: CallSummary = field(default_factory=CallSummary)
    backward: CallSummary = field(default_factory=CallSummary)

    @property
    def host_ms(self):
        return self.forward_ms + self.backward_ms

    flops = _both("flops")
    dma_in_bytes = _both("dma_in_bytes")
    dma_out_bytes = _both("dma_out_bytes")
    reg_comm_bytes = _both("reg_comm_bytes")
    tiles_per_cpe = _both("tiles_per_cpe")

    @property
    def ldm_peak_bytes(self):
        return max(self.forward.ldm_peak_bytes, self.backward.ldm_peak_bytes)

    cg_seconds = _both("seconds")       # modelled core-group seconds

    @property
    def imbalance(self):
        """Time-weighted over forward and backward."""
        total = self.cg_seconds
        if total == 0.0:
            return max(self.forward.imbalance, self.backward.imbalance)
        return (self.forward.imbalance * self.forward.seconds
                + self.backward.imbalance * self.backward.seconds) / total


def _forward_layer(net, i):
    net.layers[i].forward(net.bottom_vecs[i], net.top_vecs[i])


def _backward_layer(net, i):
    if net.layer_need_backward[i]:
        net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                               net.bottom_vecs[i])


def _recorded_pass(net, records):
    """One forward/backward pass whose kernel plans become each record's summaries."""
    for i, record in enumerate(records):
        with accounting.recording() as plans:
            _forward_layer(net, i)
        record.forward = accounting.summarize(plans)
    for i in reversed(range(len(records))):
        with accounting.recording() as plans:
            _backward_layer(net, i)
        records[i].backward = accounting.summarize(plans)


def timed_passes(net, iterations, on_iteration=None):
    """Run ``iterations`` forward/backward passes; per-layer (forward, backward) seconds summed.

    ``on_iteration(j, seconds)`` is called after each pass (for Caffe's per-iteration line).
    """
    count = len(net.layers)
    forward, backward = [0.0] * count, [0.0] * count
    clock = time.perf_counter
    for j in range(iterations):
        start = clock()
        for i in range(count):
            t0 = clock()
            _forward_layer(net, i)
            forward[i] += clock() - t0
        for i in reversed(range(count)):
            t0 = clock()
            _backward_layer(net, i)
            backward[i] += clock() - t0
        if on_iteration is not None:
            on_iteration(j, clock() - start)
    return forward, backward


def profile_net(net, iterations=1, on_iteration=None):
    """Per-layer records (``LayerProfile``) of ``net``: host ms averaged over
    ``iterations`` passes, core-group figures from the plans of one pass."""
    records = [LayerProfile(layer.name, layer.type) for layer in net.layers]
    _recorded_pass(net, records)
    forward, backward = timed_passes(net, iterations, on_iteration)
    scale = 1000.0 / max(iterations, 1)
    for record, f, b in zip(records, forward, backward):
        record.forward_ms = f * scale
        record.backward_ms = b * scale
    return records
