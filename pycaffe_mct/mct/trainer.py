"""The Mutual Calibration Training loop: two plain solvers and a calibration step.

Neither solver knows about MCT.  Each model is an ordinary Caffe solver whose
train net takes its batches through Input blobs; the trainer reads batches
from two data layers (``clean_data``, ``noisy_data`` of the MCT section),
writes them into those blobs and calls ``solver.step(1)`` on each model in
turn, so testing, display, snapshots and the learning-rate schedule are the
solvers' own.  Iteration ``k`` of the job is iteration ``k`` of both solvers.

* Pretraining, iterations [0, pretrain_iter): M_a learns from a clean batch,
  M_p from a noisy batch, apart, at the fixed learning rate ``pretrain_lr``.
  The solvers' train nets run in stage ``mct_pretrain``.
* Calibration, the rest up to max_iter (stage ``mct_calibrate``): both models
  predict the same noisy batch (a forward of each train net up to the logits
  blob), the ConfidenceMask layer (``selection_net``) ranks the samples by
  the models' average confidence in the given label over the global batch,
  then M_a
  trains on its M selected samples followed by a clean batch, and M_p on the
  noisy batch with its N-sample mask and M_a's logits as soft targets.
  The prediction pass runs in the TRAIN phase (dropout on, batch statistics
  for BatchNorm, which also moves BatchNorm's running averages once more).
* At the end: each solver's final snapshot and test, then a deploy of M_p
  alone: ``<primary prefix>_deploy.prototxt`` and ``.caffemodel``.

In an MPI job (world size > 1, see ``commands``) the models run in one of
the ``layouts``: grouped (M_p and M_a on two groups of ranks, the paper's) or
replicated (both on every rank).  The data layers' ``batch_size`` is the
global batch; each rank of a model's group trains on its share, gradients are
averaged over the group (``pycaffe_mct.parallel``), and in calibration one
Allgatherv brings both models' scores and the labels of the whole batch to
every rank (``parallel.groups.allgather_rows``): every rank selects what one
process selects, and each M_p rank finds M_a's scores for its samples, its
soft targets, among them.  The loss layers weighted by the masks divide by
the global batch's weight sum (``LossLayer.share_weight_sum``), so N ranks
take the one process's steps up to float32 rounding.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import net_passes, rng
from ..errors import CaffeError
from ..export import export_deploy_if_available
from ..layer import TRAIN
from ..diff_release import release_diffs_once_used
from ..net import Net, load_net_param
from ..proto import caffe_pb2
from ..proto_io import parse_prototxt, write_atomically
from ..data.partition import set_default_partition
from ..layers.softmax import LossLayer
from ..solvers.log import GlogWriter, default_writer
from ..solvers.params import read_solver_param
from ..solvers.solver import get_solver
from . import noise_rate, selection
from .layouts import AUX, LAYOUTS, PRIMARY, Grouped, OneProcess, Replicated
from .outputs import check_outputs_distinct

PRETRAIN, CALIBRATE = "mct_pretrain", "mct_calibrate"
MODEL_TAGS = {AUX: "[M_a] ", PRIMARY: "[M_p] "}


def _info(message):
    default_writer().info("[MCT] " + message, stacklevel=2)


# ---- configuration ------------------------------------------------------------

class MCTConfig:
    """The MCT section of a solver file with both model solvers read and checked."""

    def __init__(self, solver):
        self.param, self.source = read_solver_param(solver)
        if not self.param.HasField("mct_param"):
            raise CaffeError(f"{self.source}: has no mct_param section")
        self.mct = self.param.mct_param
        self.solvers = {AUX: self._model_solver(AUX), PRIMARY: self._model_solver(PRIMARY)}
        self.max_iter = self.solvers[PRIMARY][0].max_iter
        self.pretrain_iter = self.mct.pretrain_iter
        self.noise_rate = self._noise_rate()
        self.significance = selection.proto_float(self.mct.selection.significance)
        self._check()

    def _model_solver(self, role):
        path, inline = getattr(self.mct, f"{role}_solver"), f"{role}_solver_param"
        if self.mct.HasField(inline) == bool(path):
            raise CaffeError(f"{self.source}: mct_param needs exactly one of {role}_solver "
                             f"(a file) and {inline} (inline)")
        param, source = read_solver_param(path or getattr(self.mct, inline))
        if not path:
            source = f"{self.source} ({inline})"
        param.snapshot_prefix = self._snapshot_prefix(role, param)
        return param, source

    def _snapshot_prefix(self, role, param):
        field = f"{role}_snapshot_prefix"
        if self.mct.HasField(field):
            return getattr(self.mct, field)
        if param.HasField("snapshot_prefix"):
            return param.snapshot_prefix
        return os.path.splitext(self.source)[0] + "_" + role

    def _noise_rate(self):
        if self.mct.selection.HasField("noise_rate"):
            rate = selection.proto_float(self.mct.selection.noise_rate)
            where = f"{self.source}: mct_param.selection.noise_rate"
        elif self.mct.noisy_label_list and self.mct.clean_label_list:
            rate = selection.estimate_noise_rate_from_lists(self.mct.noisy_label_list,
                                                            self.mct.clean_label_list)
            where = (f"P_noise estimated from {self.mct.noisy_label_list} and "
                     f"{self.mct.clean_label_list}")
        elif self.mct.HasField("clean_validation"):
            return None               # estimated from M_a when calibration starts
        else:
            raise CaffeError(f"{self.source}: mct_param needs selection.noise_rate, "
                             f"noisy_label_list and clean_label_list, or clean_validation "
                             f"to estimate P_noise from")
        selection.check_noise_rate(rate, where)
        return rate

    def _check(self):
        where = f"{self.source}: mct_param"
        for role, (param, source) in self.solvers.items():
            if param.max_iter != self.max_iter:
                raise CaffeError(f"{where}: both models must have the same max_iter (they "
                                 f"step together); aux has {self.solvers[AUX][0].max_iter}, "
                                 f"primary {self.max_iter}")
            if param.iter_size != 1:
                raise CaffeError(f"{source}: iter_size must be 1 under MCT (the trainer "
                                 f"feeds one batch per iteration)")
        if not 0 <= self.pretrain_iter <= self.max_iter:
            raise CaffeError(f"{where}.pretrain_iter {self.pretrain_iter} is outside "
                             f"[0, max_iter {self.max_iter}]")
        for name in ("clean_data", "noisy_data"):
            if not self.mct.HasField(name):
                raise CaffeError(f"{where} needs {name} (a Data layer)")
        if self.mct.HasField("clean_validation") and self.mct.estimate_batches < 1:
            raise CaffeError(f"{where}.estimate_batches must be at least 1")
        if self.mct.clean_weight < 0:
            raise CaffeError(f"{where}.clean_weight must not be negative")
        check_outputs_distinct(self)

    def stage_param(self, role, stage, pretraining=True):
        """The role's SolverParameter for one stage (pretraining: fixed large rate)."""
        param = caffe_pb2.SolverParameter()
        param.CopyFrom(self.solvers[role][0])
        param.train_state.stage.append(stage)
        if stage == PRETRAIN and pretraining:
            if self.mct.HasField("pretrain_lr"):
                param.base_lr = self.mct.pretrain_lr
            param.lr_policy = "fixed"
        if role == PRIMARY and self.mct.HasField("distillation"):
            _set_distillation(param, self.mct.distillation)
        return param

    def deploy_paths(self):
        prefix = self.solvers[PRIMARY][0].snapshot_prefix
        return prefix + "_deploy.prototxt", prefix + "_deploy.caffemodel"


def _set_distillation(solver_param, distillation):
    """Give every SoftTargetLoss of the solver's train net the MCT section's settings."""
    p = solver_param
    net_param = train_net_param(p)
    for layer in net_param.layer:
        if layer.type == "SoftTargetLoss":
            layer.soft_target_param.MergeFrom(distillation)
    separate = p.HasField("train_net") or p.HasField("train_net_param")
    for field in ("net", "train_net"):
        p.ClearField(field)
    # A `net` serves the test nets too: keep it in that role, inline.
    (p.train_net_param if separate else p.net_param).CopyFrom(net_param)


# SoftTargetLoss on one sample of two classes, with the bottoms the calibration stage gives it.
_SOFT_TARGET_WARM_UP = """
force_backward: true
layer { name: "scores" type: "Input" top: "primary" top: "aux" top: "label" top: "mask"
        input_param { shape { dim: 1 dim: 2 } shape { dim: 1 dim: 2 } shape { dim: 1 }
                      shape { dim: 1 } } }
layer { name: "distill" type: "SoftTargetLoss" top: "loss"
        bottom: "primary" bottom: "aux" bottom: "label" bottom: "mask" }
"""


def compile_calibration_kernels():
    """Compile (or load from numba's cache) the kernels only the calibration stage runs.

    The calibration nets, the only ones with a SoftTargetLoss, and the selection
    net are built at the phase change; running them once on one or two samples
    early keeps their compilation out of the middle of training.  ``train`` runs
    this on a thread of its own from the end of the first iteration (numba
    compiles one kernel at a time, so the first iteration, which compiles the
    training kernels, does not wait for these) and waits for it before the
    phase change, which then compiles and loads nothing.
    """
    net_param = parse_prototxt(_SOFT_TARGET_WARM_UP, caffe_pb2.NetParameter())
    Net(net_param, TRAIN).forward_backward()
    selection_net(0.5, 0.01, 2, 2).forward_prefilled()     # Softmax and ConfidenceMask


def train_net_param(solver_param):
    """The train net of a solver as a NetParameter (read from its file if needed)."""
    p = solver_param
    for field in ("train_net_param", "net_param"):
        if p.HasField(field):
            return load_net_param(getattr(p, field))[0]
    path = p.train_net if p.HasField("train_net") else p.net
    if not path:
        raise CaffeError("the solver names no train net")
    return load_net_param(path)[0]


# ---- the parts of one iteration ------------------------------------------------

class Feeder:
    """One data layer in a net of its own: the source of clean or noisy batches.

    It reads this rank's share of each global batch: ``rank`` of ``size`` ranks
    reading it (``data.partition``)."""

    def __init__(self, layer_param, what, batch_size, rank=0, size=1):
        net_param = caffe_pb2.NetParameter(name=what)
        layer = net_param.layer.add()
        layer.CopyFrom(layer_param)
        layer.name = layer.name or what
        for field in ("data_param", "image_data_param"):
            if layer.HasField(field):
                getattr(layer, field).batch_size = batch_size
        del layer.include[:]
        del layer.exclude[:]
        if len(layer.top) < 2:
            raise CaffeError(f"mct_param.{what}: the data layer needs two tops "
                             f"(images, labels), it has {len(layer.top)}")
        set_default_partition(rank, size)
        self.share = (rank, size)
        self.net = Net(net_param, state=caffe_pb2.NetState(phase=TRAIN))
        self.tops = [self.net.blobs[name] for name in layer.top[:2]]

    def next(self):
        """The next (images, labels) batch, copied out of the layer's blobs."""
        self.net.forward_prefilled()
        return self.tops[0].data.copy(), self.tops[1].data.copy()

    def restore_iteration(self, iteration):
        self.net.restore_iteration(iteration)


class ArrayFeeder:
    """Batches from arrays in memory, reshuffled every epoch (seeded by seed and epoch),
    for Python callers that hold their data already (the benchmark, tests)."""

    def __init__(self, images, labels, batch_size, seed=0):
        if len(labels) == 0:
            raise CaffeError("the feeder got no samples")
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels, np.float32)
        self.batch_size, self.seed = batch_size, seed
        self.restore_iteration(0)

    def restore_iteration(self, iteration):
        self.position = iteration * self.batch_size

    def _order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))

    def next(self):
        count = len(self.labels)
        positions = np.arange(self.position, self.position + self.batch_size)
        epochs, within = np.divmod(positions, count)
        picked = np.array([self._order(e)[i] for e, i in zip(epochs, within)]) \
            if epochs[0] != epochs[-1] else self._order(epochs[0])[within]
        self.position += self.batch_size
        return self.images[picked], self.labels[picked]


def feed(net, arrays):
    """Write arrays into the net's Input blobs of those names (absent names are skipped)."""
    for name, array in arrays.items():
        if name in net.blobs:
            blob = net.blobs[name]
            blob.reshape(array.shape)
            blob.data[...] = array


def share_weight_sum(net, weight_blob, normalizer):
    """Make every loss layer weighted by ``weight_blob`` divide by ``normalizer``
    (the global batch's weight sum over the ranks), see LossLayer.share_weight_sum."""
    for facts in net.layer_facts:
        if isinstance(facts.layer, LossLayer) and weight_blob in facts.bottom_names:
            facts.layer.share_weight_sum(normalizer)


def producing_layer(net, blob_name):
    """Index of the last layer writing ``blob_name``."""
    for facts in reversed(net.layer_facts):
        if blob_name in facts.top_names:
            return facts.index
    raise CaffeError(f"net '{net.name}' has no blob '{blob_name}' (mct_param.logits_blob)")


class Model:
    """One of the two models on this rank: its current stage's solver, how to feed
    and query it, and its seat (communicator and share) in the layout."""

    def __init__(self, config, role, seat, log_path=None, tag=None, enabled=None,
                 release_diffs=False):
        self.config, self.role, self.seat = config, role, seat
        self.release_diffs = release_diffs      # see diff_release.py
        enabled = default_writer().enabled if enabled is None else enabled
        self.log = GlogWriter(prefix=tag or MODEL_TAGS[role], path=log_path, enabled=enabled)
        self.solver = None

    def start_stage(self, stage, param=None):
        """Build the stage's solver (fresh weights; the trainer carries the state over)."""
        param = param or self.config.stage_param(self.role, stage)
        self.solver = get_solver(param, log=self.log, source=self.config.solvers[self.role][1])
        if self.release_diffs:
            release_diffs_once_used(self.solver.net)
        return self.solver

    def join_group(self):
        """Make the solver data-parallel over the seat's communicator (if any)."""
        if self.seat.comm is not None:
            from ..parallel import attach_data_parallel
            attach_data_parallel(self.solver, self.seat.comm)

    @property
    def net(self):
        return self.solver.net

    def logits(self, images):
        """The model's class scores for ``images`` (train net forward up to the logits)."""
        net = self.net
        feed(net, {self.config.mct.data_blob: images})
        net.forward_from_to(0, producing_layer(net, self.config.mct.logits_blob))
        scores = net.blobs[self.config.mct.logits_blob].data
        return scores.reshape(scores.shape[0], -1).copy()

    def step(self, arrays, weight_blob=None, weight_sum=None):
        """One iteration on ``arrays``; ``weight_sum``: the global batch's sum of the
        ``weight_blob`` weights, the normaliser every rank's loss shares."""
        feed(self.net, arrays)
        if weight_blob is not None:
            share_weight_sum(self.net, weight_blob, max(1.0, weight_sum) / self.seat.size)
        self.solver.step(1)


def selection_net(noise_rate, significance, batch, classes):
    """The net that selects samples: both models' scores for the global batch and the
    labels in, each model's Softmax, the ConfidenceMask layer's masks out."""
    param = caffe_pb2.NetParameter(name="mct_selection")
    for name, shape in ((AUX, [batch, classes]), (PRIMARY, [batch, classes]),
                        ("label", [batch])):
        param.layer.add(name=name, type="Input", top=[name]).input_param.shape.add(dim=shape)
    for role in (AUX, PRIMARY):
        param.layer.add(name=f"{role}_prob", type="Softmax", bottom=[role],
                        top=[f"{role}_prob"])
    mask = param.layer.add(name="select", type="ConfidenceMask",
                           bottom=[f"{AUX}_prob", f"{PRIMARY}_prob", "label"],
                           top=["mask_a", "mask_p"])
    mask.confidence_mask_param.noise_rate = noise_rate
    mask.confidence_mask_param.significance = significance
    return Net(param, state=caffe_pb2.NetState(phase=TRAIN))


# ---- the trainer ---------------------------------------------------------------

class MCTTrainer:
    """Runs MCT from a solver file with an ``mct_param`` section."""

    def __init__(self, solver, world=None, feeders=None, layout="grouped", release_diffs=False):
        """``solver``: a solver file or SolverParameter with an mct_param section.
        ``world``: an mpi4py communicator for an MPI job (None: one process);
        ``layout``: "grouped" or "replicated" (see ``layouts``).
        ``feeders``: optional {"clean_data": f, "noisy_data": f} objects with
        ``next() -> (images, labels)`` and ``restore_iteration(i)`` used instead
        of the data layers in one process (the benchmark feeds arrays in memory; to
        estimate P_noise also "noisy_estimate" and "clean_validation");
        ``release_diffs``: the train nets give activation diffs back once used
        (``diff_release``)."""
        if layout not in LAYOUTS:
            raise CaffeError(f"unknown MCT layout '{layout}'; choose one of "
                             f"{', '.join(LAYOUTS)}")
        self.config = MCTConfig(solver)
        self.given_feeders = feeders
        self.world, self.layout_name = world, layout
        self.release_diffs = release_diffs
        self.rank, self.size = (world.Get_rank(), world.Get_size()) if world else (0, 1)
        mct = self.config.mct
        self.batches = {"noisy_data": _batch_size(mct.noisy_data),
                        "clean_data": _batch_size(mct.clean_data)}
        if mct.HasField("clean_validation"):
            self.batches["clean_validation"] = _batch_size(mct.clean_validation)
        self.layout, self.models, self.feeders = None, {}, {}
        self.stage, self.selection = None, None
        self._calibration_kernels = None    # their compilation (a Future), see ``train``

    # -- the division of the ranks --
    def _problem(self, stage):
        """``problem(primary ranks, aux ranks)`` for ``stage``: why a division does not
        split the global batches evenly over each group (None if it does)."""
        estimating = self.config.noise_rate is None and stage == CALIBRATE
        reads = {PRIMARY: ["noisy_data"],
                 AUX: ["clean_data"] + (["noisy_data"] if stage == CALIBRATE else [])
                 + (["clean_validation"] if estimating else [])}

        def problem(primary, aux):
            for role, ranks in ((PRIMARY, primary), (AUX, aux)):
                for what in reads[role]:
                    batch = self.batches[what]
                    if batch < ranks or batch % ranks:
                        name = "M_p" if role == PRIMARY else "M_a"
                        return (f"{self.config.source}: mct_param.{what} batch_size {batch} "
                                f"cannot be split evenly over {name}'s {ranks} ranks (it is "
                                f"the global batch; make it a multiple of the group size)")
            return None
        return problem

    def _check_divisions(self):
        """Refuse, before training, a rank count that gives some phase no division."""
        if self.size == 1:
            return
        if self.layout_name == "replicated":
            found = self._problem(CALIBRATE)(self.size, self.size)
            if found:
                raise CaffeError(found.replace("M_p's", "all").replace("M_a's", "all"))
            return
        from ..parallel.groups import group_sizes
        for stage in (PRETRAIN, CALIBRATE):
            group_sizes(self.size, GROUP_PHASES[stage], self._work_ratio(),
                        self._problem(stage))

    def _work_ratio(self):
        """M_p's work over M_a's in a pretraining iteration: the images each steps on
        (noisy batch : clean batch; the models' per-image cost is taken as equal, as
        for the paper's pair of the same network)."""
        return self.batches["noisy_data"] / self.batches["clean_data"]

    def _layout_for(self, stage):
        if self.layout is not None:
            return self.layout.for_phase(GROUP_PHASES[stage], self._problem(stage))
        if self.world is None or self.size == 1:
            return OneProcess()
        if self.layout_name == "replicated":
            return Replicated(self.world)
        return Grouped.divide(self.world, GROUP_PHASES[stage], self._work_ratio(),
                              self._problem(stage))

    # -- entering a stage --
    def _enter(self, stage, iteration):
        """Divide the ranks for ``stage``, build this rank's models' solvers with the
        state they had (here, or on the ranks that trained them), and the feeders."""
        previous, before = self.layout, self.models
        self.layout = self._layout_for(stage)
        _info(f"Iteration {iteration}: stage {stage}: {self.layout.describe(stage)}"
              f"{self._division_note(stage)}")
        if self.layout.world is not None:
            from ..parallel.faults import set_rank_role
            set_rank_role(self.layout.role())
        self._build_feeders(stage, iteration)
        self.models = {role: self._stage_model(role, stage, before, iteration)
                       for role in self.layout.seats}
        if isinstance(previous, Grouped) and previous is not self.layout:
            self._hand_over(previous, before)
        for model in self.models.values():
            model.join_group()
        self.stage = stage

    def _division_note(self, stage):
        if not isinstance(self.layout, Grouped):
            return ""
        if stage == PRETRAIN:
            return (f" (noisy:clean work per iteration {self.batches['noisy_data']}:"
                    f"{self.batches['clean_data']})")
        return " (equal halves: both models see the same batches)"

    def _stage_model(self, role, stage, before, iteration):
        seat = self.layout.seats[role]
        model = Model(self.config, role, seat, self._log_path(role, seat),
                      enabled=seat.is_root and (self.size > 1 or default_writer().enabled),
                      release_diffs=self.release_diffs)
        solver = model.start_stage(stage)
        if role in before:
            solver.copy_state_from(before[role].solver)
        else:
            solver.set_position(iteration)
        return model

    def _log_path(self, role, seat):
        """Each model's Caffe log, written by the root of the ranks training it."""
        if not seat.is_root:
            return None
        path = self.config.solvers[role][0].snapshot_prefix + ".log"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return path

    def _hand_over(self, previous, before):
        """Broadcast each model's parameters, history and position from the root of
        the group that trained it to the ranks that join that model now."""
        from ..parallel.groups import broadcast_state
        for role, (source, receivers) in self.layout.newcomers(previous).items():
            arrays = None
            if self.rank == source:
                arrays = _carried(before[role].solver)
            elif self.rank in receivers:
                arrays = _carried(self.models[role].solver)
            broadcast_state(self.world, arrays, source, receivers)
            if self.rank in receivers:
                self.models[role].solver.set_position(*arrays[-1])
            _info(f"M_{'p' if role == PRIMARY else 'a'} state handed from rank {source} "
                  f"to {_ranks(receivers)}")

    def _build_feeders(self, stage, iteration):
        """This rank's feeders for ``stage``, on that stage's batches from ``iteration``."""
        if self.given_feeders is not None:
            self.feeders = self.given_feeders
            return
        reads = {PRIMARY: ["noisy_data"],
                 AUX: ["clean_data"] + (["noisy_data"] if stage == CALIBRATE else [])}
        feeders = {}
        for role, seat in self.layout.seats.items():
            for what in reads[role]:
                feeders[what] = self._feeder(what, seat)
                feeders[what].restore_iteration(iteration)
        self.feeders = feeders

    def _feeder(self, what, seat):
        """A feeder of this rank's share of ``what`` (the current one if it reads that)."""
        old = self.feeders.get(what)
        if old is not None and old.share == (seat.rank, seat.size):
            return old
        seed = self.config.param.random_seed
        rng.set_random_seed(seed if seed >= 0 else 1701)
        try:
            feeder = Feeder(getattr(self.config.mct, what), what,
                            self.batches[what] // seat.size, seat.rank, seat.size)
        except CaffeError as exc:
            raise CaffeError(f"{self.config.source}: mct_param.{what}: {exc}") from None
        return feeder

    def _check_models(self):
        """Both models must score the same classes (checked across the ranks)."""
        classes = {}
        for role, model in self.models.items():
            logits = model.net.blobs.get(self.config.mct.logits_blob)
            if logits is None:
                raise CaffeError(f"{self.config.solvers[role][1]}: the train net has no "
                                 f"blob '{self.config.mct.logits_blob}' (mct_param.logits_blob)")
            classes[role] = logits.count // max(1, logits.shape[0])
        if self.world is not None and self.size > 1:
            for theirs in self.world.allgather(classes):
                classes.update(theirs)
        if classes[AUX] != classes[PRIMARY]:
            raise CaffeError(f"{self.config.source}: the models' class counts differ: M_a "
                             f"scores {classes[AUX]} classes, M_p {classes[PRIMARY]}")
        self.classes = classes[PRIMARY]

    # -- calibration's selection --
    def calibration_noise_rate(self):
        """P_noise for calibration's selection, resolved once when calibration starts: as
        configured, or estimated now from M_a's predictions (``noise_rate``)."""
        if self.config.noise_rate is None:
            estimate = self._estimate_noise_rate()
            self.config.noise_rate = estimate.rate
            _info(f"P_noise estimated from M_a: {estimate.rate:.4f} (accuracy "
                  f"{estimate.accuracy:.4f} on {estimate.validation_count} clean validation "
                  f"samples, agreement {estimate.agreement:.4f} with the labels of "
                  f"{estimate.noisy_count} noisy samples)")
        return self.config.noise_rate

    def _start_selection(self):
        rate = self.calibration_noise_rate()
        batch = self.batches["noisy_data"]
        self.selection = selection_net(rate, self.config.significance, batch, self.classes)
        layer = self.selection.layer_dict["select"]
        _info(f"P_noise = {layer.noise_rate:g}; global noisy batch {batch}: M_a takes "
              f"{selection.aux_sample_count(batch, layer.noise_rate, layer.significance)} "
              f"samples (eq. 1), M_p {selection.primary_sample_count(batch, layer.noise_rate)} "
              f"(eq. 2)")

    def select(self, gathered):
        """Global (mask_a, mask_p) from both models' scores and the labels of the whole
        noisy batch (the ConfidenceMask layer), the same on every rank."""
        feed(self.selection, gathered)
        self.selection.forward_prefilled()
        return (self.selection.blobs["mask_a"].data.copy(),
                self.selection.blobs["mask_p"].data.copy())

    def _gather(self, pieces):
        """Both models' scores and the labels for the whole batch, on every rank."""
        if self.layout.world is None:
            return {name: rows for name, (_, rows) in pieces.items()}
        from ..parallel.groups import allgather_rows
        return allgather_rows(self.world, pieces, self.batches["noisy_data"])

    # -- the loop --
    def train(self, resume_file=None):
        """Pretrain, calibrate, deploy; ``resume_file`` is M_p's .solverstate."""
        self._check_divisions()
        start = self._resume_iteration(resume_file) if resume_file else 0
        self._enter(PRETRAIN if start < self.config.pretrain_iter else CALIBRATE, start)
        self._check_models()
        if resume_file:
            self._restore(resume_file, start)
        if self.stage == CALIBRATE:
            self._start_selection()         # after the restore: P_noise may come from M_a
        with ThreadPoolExecutor(1, thread_name_prefix="calibration-kernels") as background:
            for iteration in range(start, self.config.max_iter):
                self.step(iteration)
                if self.stage == PRETRAIN and self._calibration_kernels is None:
                    self._calibration_kernels = background.submit(compile_calibration_kernels)
        results = self._finish()
        self.deploy()
        return results

    def step(self, iteration):
        """Iteration ``iteration`` of both models (re-dividing the ranks first when
        calibration starts)."""
        if iteration == self.config.pretrain_iter and self.stage == PRETRAIN:
            self._calibration_kernels.result()
            self._snapshot_all()
            self._enter(CALIBRATE, iteration)
            self._start_selection()
        if self.stage == PRETRAIN:
            self._pretrain_step()
        else:
            self._calibration_step()

    def _estimate_noise_rate(self):
        """M_a's matches on estimate_batches batches of noisy and of clean validation data:
        counted on M_a's ranks with fresh feeders (the training batches stay as they were)
        and summed over the world, where the other ranks add zeros."""
        counts = np.zeros(4, np.int64)
        model = self.models.get(AUX)
        if model is not None:
            for slot, what in enumerate(("noisy_data", "clean_validation")):
                feeder = self._estimate_feeder(what, model.seat)
                for _ in range(self.config.mct.estimate_batches):
                    images, labels = feeder.next()
                    counts[2 * slot:2 * slot + 2] += noise_rate.matches(model.logits(images),
                                                                        labels)
        if self.world is not None:
            counts = self.world.allreduce(counts)
        return noise_rate.estimate_from_counts(*counts, self.classes)

    def _estimate_feeder(self, what, seat):
        if self.given_feeders is not None:
            return self.given_feeders["noisy_estimate" if what == "noisy_data" else what]
        try:
            return Feeder(getattr(self.config.mct, what), what, self.batches[what] // seat.size,
                          seat.rank, seat.size)
        except CaffeError as exc:
            raise CaffeError(f"{self.config.source}: mct_param.{what}: {exc}") from None

    def _pretrain_step(self):
        mct = self.config.mct
        for role, model in self.models.items():
            what, weights = (("clean_data", mct.weight_blob) if role == AUX
                             else ("noisy_data", mct.mask_blob))
            images, labels = self.feeders[what].next()
            model.step({mct.data_blob: images, mct.label_blob: labels,
                        weights: np.ones(len(labels), np.float32)},
                       weights, self.batches[what])

    def _calibration_step(self):
        mct = self.config.mct
        images, labels = self.feeders["noisy_data"].next()
        pieces = {}
        for role, model in self.models.items():
            positions = model.seat.positions(self.batches["noisy_data"])
            pieces[role] = (positions, model.logits(images))
            if role == PRIMARY:
                pieces["label"] = (positions, labels)
        gathered = self._gather(pieces)
        mask_a, mask_p = self.select(gathered)
        if AUX in self.models:
            self._aux_step(images, labels, mask_a)
        if PRIMARY in self.models:
            mine = self.models[PRIMARY].seat.positions(len(mask_p))
            self.models[PRIMARY].step({
                mct.data_blob: images, mct.label_blob: labels, mct.mask_blob: mask_p[mine],
                mct.aux_logits_blob: gathered[AUX][mine]}, mct.mask_blob, float(mask_p.sum()))

    def _aux_step(self, images, labels, mask_a):
        """M_a on its selected noisy samples followed by a clean batch."""
        mct, model = self.config.mct, self.models[AUX]
        chosen = mask_a[model.seat.positions(len(mask_a))] > 0
        clean_images, clean_labels = self.feeders["clean_data"].next()
        weights = np.concatenate([np.ones(int(chosen.sum()), np.float32),
                                  np.full(len(clean_labels), mct.clean_weight, np.float32)])
        total = float(mask_a.sum()) + mct.clean_weight * self.batches["clean_data"]
        model.step({mct.data_blob: np.concatenate([images[chosen], clean_images]),
                    mct.label_blob: np.concatenate([labels[chosen], clean_labels]),
                    mct.weight_blob: weights}, mct.weight_blob, total)

    # -- snapshots, resume, the end --
    def _snapshot_all(self):
        for model in self.models.values():
            model.solver.snapshot_if_new()

    def _resume_iteration(self, resume_file):
        from ..solvers.snapshots import read_state
        return read_state(resume_file).iter

    def _restore(self, resume_file, iteration):
        """Each model this rank trains from its own snapshot of ``iteration``."""
        for role, model in self.models.items():
            state = resume_file if role == PRIMARY else model.solver.snapshot_path(iteration)
            if not os.path.isfile(state):
                raise CaffeError(f"resuming from {resume_file} (iteration {iteration}) needs "
                                 f"M_a's state {state}, which does not exist")
            model.solver.restore(state)
        _info(f"Resumed both models at iteration {iteration}")

    def _finish(self):
        """Final snapshot and test of this rank's models; returns M_p's test outputs
        (empty where M_p is not tested here)."""
        results = {role: finish_solver(model.solver) for role, model in self.models.items()}
        return results.get(PRIMARY, {})

    def noise_only_baseline(self):
        """M_p's net and solver on the noisy labels alone (data-parallel over every
        rank); returns its final test outputs."""
        param = self.config.stage_param(PRIMARY, PRETRAIN, pretraining=False)
        param.snapshot_prefix += "_noise_only"
        seat = Replicated(self.world).seats[PRIMARY] if self.size > 1 else \
            OneProcess().seats[PRIMARY]
        model = Model(self.config, PRIMARY, seat, tag="[noise-only] ",
                      release_diffs=self.release_diffs)
        model.start_stage(PRETRAIN, param=param)
        model.join_group()
        self.feeders = {}
        feeder = self.given_feeders["noisy_data"] if self.given_feeders is not None \
            else self._feeder("noisy_data", seat)
        feeder.restore_iteration(0)
        mct = self.config.mct
        _info("Training the noise-only baseline")
        for _ in range(self.config.max_iter):
            images, labels = feeder.next()
            model.step({mct.data_blob: images, mct.label_blob: labels})
        return finish_solver(model.solver)

    def deploy(self):
        """Write M_p alone for inference (on world rank 0, an M_p rank in every layout);
        returns (prototxt path, caffemodel path)."""
        prototxt, caffemodel = self.config.deploy_paths()
        if self.rank != 0:
            return prototxt, caffemodel
        solver = self.models[PRIMARY].solver
        net_param = deploy_net_param(self.config, solver.param,
                                     solver.net.blobs[self.config.mct.data_blob].shape)
        deployed = Net(net_param, caffe_pb2.TEST)     # proves the deploy net builds
        deployed.share_with(solver.net)
        write_atomically(prototxt, str(net_param).encode())
        deployed.save(caffemodel)
        _info(f"Deployed M_p: {prototxt} + {caffemodel}")
        export_deploy_if_available(prototxt, caffemodel, log=_info)
        return prototxt, caffemodel


GROUP_PHASES = {PRETRAIN: "pretrain", CALIBRATE: "calibrate"}


def _batch_size(layer):
    return (layer.data_param.batch_size if layer.HasField("data_param")
            else layer.image_data_param.batch_size)


def _carried(solver):
    """A solver's state arrays and, last, its position (iter, current_step)."""
    return solver.state_arrays() + [np.array([solver.iter, solver.current_step], np.int64)]


def _ranks(ranks):
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def finish_solver(solver):
    """What Solver.solve does after its last step: final snapshot, final test
    (whose outputs of test net 0 it returns)."""
    if solver.param.snapshot_after_train:
        solver.snapshot_if_new()
    results = solver.test_all() if solver.is_root and solver.test_nets else []
    solver.info("Optimization Done.", 332)
    return results[0] if results else {}


def deploy_net_param(config, solver_param, data_shape):
    """A model's calibration train net (``solver_param``'s) reduced to images of
    ``data_shape`` in, probabilities out.

    Keeps the data Input (batch 1) and every layer that needs no label, mask
    or soft target, then appends Softmax on the logits as ``prob``.
    """
    mct = config.mct
    state = caffe_pb2.NetState(phase=TRAIN)
    state.MergeFrom(solver_param.train_state)
    net_param = net_passes.filter_by_state(train_net_param(solver_param), state)
    data_shape = list(data_shape)
    deploy = caffe_pb2.NetParameter(name=net_param.name)
    known = {mct.data_blob}
    for layer in net_param.layer:
        if layer.type == "Input":
            if mct.data_blob in layer.top:
                deploy.layer.add(name=layer.name, type="Input", top=[mct.data_blob]) \
                    .input_param.shape.add(dim=[1] + data_shape[1:])
            continue
        if not set(layer.bottom) <= known or "Loss" in layer.type or \
                layer.type == "Accuracy":
            continue
        kept = deploy.layer.add()
        kept.CopyFrom(layer)
        del kept.include[:]
        del kept.exclude[:]
        known.update(layer.top)
    deploy.layer.add(name="prob", type="Softmax", bottom=[mct.logits_blob], top=["prob"])
    return deploy
