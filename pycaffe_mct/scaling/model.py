"""The cost of one data-parallel training iteration on p Sunway core groups.

An iteration on p core groups (one MPI process each) costs

* compute: the core-group emulator's modelled time for this CG's share of
  the global batch (``global batch / p`` images), divided by one global
  ``compute_efficiency`` (the fraction of the emulator's modelled rate the
  real software sustains);
* gradient allreduce: our ring (``parallel/ring.py``) as it runs: p-1
  reduce-scatter steps and p-1 allgather steps, each moving one n/p segment
  to the neighbour.  A reduce-scatter step cuts its segment into pieces and
  adds each arrived piece while the next ones are on the wire, so a step
  costs ``a`` + the first piece's transfer (fill) + the other pieces at the
  slower of the link and the adder + the last piece's addition (drain);
  ``a`` is the message latency, ``b`` seconds per byte on the network, ``g``
  seconds per byte to add a received piece.  With one piece per step this is
  the unpipelined ``2(p-1)a + 2n(p-1)/p b + n(p-1)/p g`` of Thakur,
  Rabenseifner and Gropp (2005);
* MCT's calibration step (``MCTSpec``), in either of the trainer's layouts:
  *grouped* (the paper's section 3): M_p on ceil(p/2) CGs and M_a on the
  other floor(p/2), each data-parallel over the global batch with its own
  ring allreduce, the two groups side by side; then a world allgather of
  both models' confidences (``(p-1)a + m(p-1)/p b`` for ``m`` bytes in all)
  and M_a's logits sent point to point to the M_p ranks holding the same
  samples (the soft-target exchange).  *replicated*: every CG runs both
  models on its share and allreduces both models' gradients over all p;
  the confidences are gathered the same way and the soft targets stay local;
* I/O: reading and decoding this CG's images; with prefetch a second thread
  does it during the previous iteration, so only what outlasts compute and
  communication is exposed.

All times are seconds and all sizes bytes; MB/MiB only appear where the
paper's figures are read in (``paper.py``).
"""
from dataclasses import dataclass

import math

from ..cg.spec import SW26010
from ..parallel.ring import PIECE_BYTES, ring_piece_bytes

GBIT = 1e9 / 8          # bytes in a gigabit
FLOAT32_BYTES = 4
# What MCT's allgather carries per sample and model (our reading of section 3: each
# process shares the confidence it ranks samples by): one float32.
CONFIDENCE_BYTES_PER_SAMPLE = FLOAT32_BYTES


@dataclass(frozen=True)
class NetworkSpec:
    """TaihuLight's interconnect as the alpha-beta-gamma model sees it."""

    # a: one MPI message's start-up time.  Not in the stored sources; our choice is
    # 2 microseconds, typical of the InfiniBand-class MPI the network is built on.
    latency_s: float = 2e-6
    # 1/b: 128 Gb/s injection bandwidth per node (glennklockwood.com TaihuLight notes,
    # docs/reference/sw26010.md).
    node_bytes_per_s: float = 128 * GBIT
    # Training processes sharing one node's injection bandwidth.  The paper trains
    # with one core group per process in the "large shared memory" mode (its
    # section 4.1: the model needs more than one CG's 8 GB), and Table 1 counts
    # "nodes (core groups)" as one, so one process per node.
    processes_per_node: int = 1
    # 1/g: the reduction streams two float32 operands in and one out through the
    # CG's DMA engine (the CPEs add), so 3 bytes move per byte reduced.
    reduce_bytes_per_s: float = SW26010.dma_bytes_per_s / 3
    # The largest piece our ring sends at once (parallel/ring.py); smaller
    # segments are cut into a few pieces too, so additions always overlap.
    ring_piece_bytes: float = PIECE_BYTES

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
    """The ring allreduce's exposed (latency, transfer, reduction) seconds; all 0 for p = 1.

    Per reduce-scatter step the pieces of one segment stream through a
    two-stage pipeline (link, then adder): the slower stage is paid for every
    piece, the faster one only for the first piece (fill) or the last (drain).
    Allgather steps only transfer.
    """
    if p == 1:
        return (0.0, 0.0, 0.0)
    segment = n_bytes / p
    pieces = max(1, math.ceil(segment / ring_piece_bytes(segment, network.ring_piece_bytes)))
    piece = segment / pieces
    beta, gamma = network.seconds_per_byte, network.reduce_seconds_per_byte
    if beta >= gamma:       # link-bound: every piece's transfer, the last piece's addition
        transfer, reduction = segment * beta, piece * gamma
    else:                   # adder-bound: the first piece's transfer, every piece's addition
        transfer, reduction = piece * beta, segment * gamma
    steps = p - 1
    return (2 * steps * network.latency_s, steps * (transfer + segment * beta),
            steps * reduction)


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

    exchange: float = 0.0    # MCT's soft-target exchange (grouped layout)

    @property
    def seconds(self):
        return (self.compute + self.allreduce + self.allgather + self.exchange
                + self.io_exposed)


MCT_LAYOUTS = ("grouped", "replicated")


@dataclass(frozen=True)
class MCTSpec:
    """What one MCT calibration iteration trains, beyond M_p's forward and backward.

    The trainer's calibration step: both models predict the noisy batch (a
    forward pass, ``forward_fraction`` of a forward+backward), M_p trains on
    it, and M_a trains on its selected samples followed by a clean batch,
    ``aux_batch_share`` of the noisy batch in all (1.0: the digits demo's
    clean batch is half the noisy one and M_a selects about half).  M_a is the
    same net as M_p unless ``aux_compute`` and ``aux_param_bytes`` are given.
    """

    layout: str = "grouped"            # or "replicated"
    classes: int = 1000                # logits per sample in the soft-target exchange
    forward_fraction: float = 1 / 3    # our choice where the profile does not say
    aux_batch_share: float = 1.0
    aux_compute: object = None
    aux_param_bytes: float = None

    def __post_init__(self):
        if self.layout not in MCT_LAYOUTS:
            raise ValueError(f"unknown MCT layout {self.layout!r}; "
                             f"choose one of {', '.join(MCT_LAYOUTS)}")


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
    mct: MCTSpec = None                # None: plain data parallelism
    confidence_bytes_per_sample: float = CONFIDENCE_BYTES_PER_SAMPLE

    @property
    def iterations(self):
        """Iterations of the whole run: the global batch is fixed, whatever p is."""
        return self.images * self.epochs / self.global_batch


def _reading_cgs(workload, p):
    """How many CGs share the reading of one global batch: all p, except that both
    groups of the grouped MCT layout read the same batch, each over its own CGs."""
    grouped = workload.mct is not None and workload.mct.layout == "grouped" and p > 1
    return (p + 1) // 2 if grouped else p


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
        images = workload.global_batch / _reading_cgs(workload, p)
        if workload.mct is None:
            compute = workload.compute_seconds(images) / self.compute_efficiency
            allreduce = ring_allreduce_seconds(workload.param_bytes, p, self.network)
            allgather = exchange = 0.0
        else:
            compute, allreduce, allgather, exchange = self._mct_terms(workload, p)
        io = io_seconds(images, p, self.io)
        busy = compute + allreduce + allgather + exchange
        exposed = max(0.0, io - busy) if self.prefetch else io
        return IterationCost(p, images, compute, allreduce, allgather, io, exposed, exchange)

    def _mct_terms(self, workload, p):
        """(compute, allreduce, allgather, exchange) of one MCT calibration iteration."""
        mct, batch = workload.mct, workload.global_batch
        aux_compute = mct.aux_compute or workload.compute_seconds
        aux_bytes = mct.aux_param_bytes or workload.param_bytes

        def primary(images):
            return (1 + mct.forward_fraction) * workload.compute_seconds(images)

        def auxiliary(images):
            return (mct.forward_fraction + mct.aux_batch_share) * aux_compute(images)

        gathered = 2 * batch * workload.confidence_bytes_per_sample   # both models' confidences
        allgather = ring_allgather_seconds(gathered, p, self.network)
        if mct.layout == "replicated" or p == 1:
            compute = (primary(batch / p) + auxiliary(batch / p)) / self.compute_efficiency
            allreduce = (ring_allreduce_seconds(workload.param_bytes, p, self.network)
                         + ring_allreduce_seconds(aux_bytes, p, self.network))
            return compute, allreduce, allgather, 0.0
        primary_cgs, aux_cgs = (p + 1) // 2, p // 2
        # The groups run side by side: the slower one sets the pace.
        groups = [(primary(batch / primary_cgs) / self.compute_efficiency,
                   ring_allreduce_seconds(workload.param_bytes, primary_cgs, self.network)),
                  (auxiliary(batch / aux_cgs) / self.compute_efficiency,
                   ring_allreduce_seconds(aux_bytes, aux_cgs, self.network))]
        compute, allreduce = max(groups, key=sum)
        # The busiest M_a rank sends the logits of its share to the M_p ranks.
        logits = batch / aux_cgs * mct.classes * FLOAT32_BYTES
        exchange = self.network.latency_s + logits * self.network.seconds_per_byte
        return compute, allreduce, allgather, exchange

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
                "allreduce": c.allreduce, "allgather": c.allgather, "exchange": c.exchange,
                "io": c.io_exposed,
                "io_total": c.io, "total_hours": self.hours, "efficiency": self.efficiency}
