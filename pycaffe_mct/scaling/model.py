"""The cost of one data-parallel training iteration on p Sunway core groups.

An iteration on p core groups (one MPI process each) costs

* compute: the core-group emulator's modelled time for this CG's share of
  the global batch (``global batch / p`` images), divided by one global
  ``compute_efficiency`` (the fraction of the emulator's modelled rate the
  real software sustains);
* gradient allreduce: a ring over the flattened parameter gradients,
  ``2(p-1)a + 2n(p-1)/p b + n(p-1)/p g`` (Thakur, Rabenseifner and Gropp
  2005; baidu-allreduce), ``a`` the message latency, ``b`` seconds per byte
  on the network, ``g`` seconds per byte to add a received chunk;
* confidence allgather (MCT only): a ring allgather of every sample's
  confidence, ``(p-1)a + m(p-1)/p b`` for ``m`` bytes in all;
* I/O: reading and decoding this CG's images; with prefetch a second thread
  does it during the previous iteration, so only what outlasts compute and
  communication is exposed.

All times are seconds and all sizes bytes; MB/MiB only appear where the
paper's figures are read in (``paper.py``).
"""
from dataclasses import dataclass

from ..cg.spec import SW26010

GBIT = 1e9 / 8          # bytes in a gigabit
# What MCT's allgather carries per sample (our reading of section 3: each process
# shares the confidence it ranks samples by): one float32.
CONFIDENCE_BYTES_PER_SAMPLE = 4


@dataclass(frozen=True)
class NetworkSpec:
    """TaihuLight's interconnect as the alpha-beta-gamma model sees it."""

    # a: one MPI message's start-up time.  Not in the stored sources; our choice is
    # 2 microseconds, typical of the InfiniBand-class MPI the network is built on.
    latency_s: float = 2e-6
    # 1/b: 128 Gb/s injection bandwidth per node (glennklockwood.com TaihuLight notes,
    # ../shared/reference/sw26010.md).
    node_bytes_per_s: float = 128 * GBIT
    # Training processes sharing one node's injection bandwidth.  The paper trains
    # with one core group per process in the "large shared memory" mode (its
    # section 4.1: the model needs more than one CG's 8 GB), and Table 1 counts
    # "nodes (core groups)" as one, so one process per node.
    processes_per_node: int = 1
    # 1/g: the reduction streams two float32 operands in and one out through the
    # CG's DMA engine (the CPEs add), so 3 bytes move per byte reduced.
    reduce_bytes_per_s: float = SW26010.dma_bytes_per_s / 3

    @property
    def seconds_per_byte(self):
        """b for one process."""
        return self.processes_per_node / self.node_bytes_per_s

    @property
    def reduce_seconds_per_byte(self):
        """g for one process."""
        return 1.0 / self.reduce_bytes_per_s


@dataclass(frozen=True)
class IOSpec:
    """Reading and decoding training images on a core group's MPE (all our choices)."""

    # Bytes of one stored training image.  Not in the stored sources; our choice is
    # 100 kB, a web-crawled JPEG of a few hundred pixels a side (Clothing1M's kind).
    image_bytes: float = 100e3
    # One process's read bandwidth from the shared file system (choice: 500 MB/s).
    process_read_bytes_per_s: float = 500e6
    # The file system's aggregate bandwidth, shared by all processes (choice: 100 GB/s,
    # the order of a large Lustre installation of TaihuLight's generation).
    filesystem_bytes_per_s: float = 100e9
    # Decoding, resizing and cropping one image on the MPE, a single 1.45 GHz core
    # (choice: 20 ms, about four times what one desktop core needs for such a JPEG).
    decode_s: float = 20e-3


def ring_allreduce_terms(n_bytes, p, network):
    """The ring allreduce's (latency, bandwidth, reduction) seconds; all 0 for one process."""
    share = n_bytes * (p - 1) / p
    return (2 * (p - 1) * network.latency_s, 2 * share * network.seconds_per_byte,
            share * network.reduce_seconds_per_byte)


def ring_allreduce_seconds(n_bytes, p, network):
    """Ring allreduce of ``n_bytes`` over ``p`` processes."""
    return sum(ring_allreduce_terms(n_bytes, p, network))


def ring_allgather_seconds(total_bytes, p, network):
    """Ring allgather in which the ``p`` contributions add up to ``total_bytes``."""
    return (p - 1) * network.latency_s + total_bytes * (p - 1) / p * network.seconds_per_byte


def io_seconds(images, p, io):
    """Reading and decoding ``images`` on each of ``p`` processes reading at once."""
    read_rate = min(io.process_read_bytes_per_s, io.filesystem_bytes_per_s / p)
    return images * (io.image_bytes / read_rate + io.decode_s)


@dataclass(frozen=True)
class IterationCost:
    """Seconds of one iteration on ``cgs`` core groups, term by term."""

    cgs: int
    images_per_cg: float
    compute: float
    allreduce: float
    allgather: float
    io: float            # the whole I/O time
    io_exposed: float    # the part that adds to the iteration

    @property
    def seconds(self):
        return self.compute + self.allreduce + self.allgather + self.io_exposed


@dataclass(frozen=True)
class Workload:
    """What is trained: a net's per-image cost and parameters, and the run's size.

    ``compute_seconds(images)`` is one core group's modelled (100%-efficient)
    time for a forward and backward pass over ``images`` images.
    """

    compute_seconds: object
    param_bytes: float
    global_batch: int
    images: float
    epochs: float
    mct: bool = False
    confidence_bytes_per_sample: float = CONFIDENCE_BYTES_PER_SAMPLE

    @property
    def iterations(self):
        """Iterations of the whole run: the global batch is fixed, whatever p is."""
        return self.images * self.epochs / self.global_batch


@dataclass(frozen=True)
class ScalingModel:
    """The figures an iteration's cost depends on; defaults are TaihuLight's."""

    # The fraction of the emulator's modelled core-group rate the training software
    # sustains.  Stated once, here; see ``paper.py`` for how the default is derived
    # and how it compares with swDNN's 54% of peak on convolution.
    compute_efficiency: float = 1.0
    network: NetworkSpec = NetworkSpec()
    io: IOSpec = IOSpec()
    prefetch: bool = True

    def iteration(self, workload, p):
        """The cost of one iteration of ``workload`` on ``p`` core groups."""
        images = workload.global_batch / p
        compute = workload.compute_seconds(images) / self.compute_efficiency
        allreduce = ring_allreduce_seconds(workload.param_bytes, p, self.network)
        allgather = 0.0
        if workload.mct:
            total = workload.global_batch * workload.confidence_bytes_per_sample
            allgather = ring_allgather_seconds(total, p, self.network)
        io = io_seconds(images, p, self.io)
        busy = compute + allreduce + allgather
        exposed = max(0.0, io - busy) if self.prefetch else io
        return IterationCost(p, images, compute, allreduce, allgather, io, exposed)

    def training_hours(self, workload, p):
        return self.iteration(workload, p).seconds * workload.iterations / 3600.0

    def rows(self, workload, cgs):
        """One row per core-group count: the iteration's cost and the run's hours."""
        base = self.iteration(workload, 1).seconds
        rows = []
        for p in cgs:
            cost = self.iteration(workload, p)
            rows.append(ScalingRow(cost, cost.seconds * workload.iterations / 3600.0,
                                   base / (p * cost.seconds)))
        return rows


@dataclass(frozen=True)
class ScalingRow:
    """One core-group count's iteration cost, the run's total hours, and the parallel
    efficiency against one core group (1 = perfectly linear speed-up)."""

    cost: IterationCost
    hours: float
    efficiency: float

    def as_dict(self):
        c = self.cost
        return {"cgs": c.cgs, "images_per_cg": c.images_per_cg,
                "seconds_per_iteration": c.seconds, "compute": c.compute,
                "allreduce": c.allreduce, "allgather": c.allgather, "io": c.io_exposed,
                "io_total": c.io, "total_hours": self.hours, "efficiency": self.efficiency}
