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
  blob), ``selection.calibration_masks`` ranks the samples by the models'
  average confidence in the given label over the global batch, then M_a
  trains on its M selected samples followed by a clean batch, and M_p on the
  noisy batch with its N-sample mask and M_a's logits as soft targets.
  The prediction pass runs in the TRAIN phase (dropout on, batch statistics
  for BatchNorm, which also moves BatchNorm's running averages once more).
* At the end: each solver's final snapshot and test, then a deploy of M_p
  alone: ``<primary prefix>_deploy.prototxt`` and ``.caffemodel``.

In an MPI job (world size > 1, see ``commands``) every rank runs both models
on its share of each global batch: the data layers' ``batch_size`` is the
global batch, split evenly over the ranks; gradients are averaged by
``pycaffe_mct.parallel`` and the confidences are gathered from all ranks
before ranking, so the masks are those of one process with the whole batch.
"""
import os

import numpy as np

from .. import net_passes, rng
from ..errors import CaffeError
from ..layer import TRAIN
from ..net import Net, load_net_param
from ..proto import caffe_pb2
from ..proto_io import write_atomically
from ..solvers.log import GlogWriter, default_writer
from ..solvers.params import read_solver_param
from ..solvers.solver import get_solver
from . import noise_rate, selection

PRETRAIN, CALIBRATE = "mct_pretrain", "mct_calibrate"
AUX, PRIMARY = "aux", "primary"
MODEL_TAGS = {AUX: "[M_a] ", PRIMARY: "[M_p] "}


def _info(message):
    default_writer().info("[MCT] " + message, "mct_trainer.py:0")


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
    """One data layer in a net of its own: the source of clean or noisy batches."""

    def __init__(self, layer_param, what, batch_size):
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
        self.net = Net(net_param, state=caffe_pb2.NetState(phase=TRAIN))
        self.tops = [self.net.blobs[name] for name in layer.top[:2]]

    def next(self):
        """The next (images, labels) batch, copied out of the layer's blobs."""
        self.net.forward_prefilled()
        return self.tops[0].data.copy(), self.tops[1].data.copy()

    def restore_iteration(self, iteration):
        for layer in self.net.layers:
            hook = getattr(layer, "restore_iteration", None)
            if hook is not None:
                hook(iteration)


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


def producing_layer(net, blob_name):
    """Index of the last layer writing ``blob_name``."""
    for index in range(len(net.layers) - 1, -1, -1):
        if blob_name in net.top_names[net.layers[index].name]:
            return index
    raise CaffeError(f"net '{net.name}' has no blob '{blob_name}' (mct_param.logits_blob)")


class Model:
    """One of the two models: its current stage's solver and how to feed and query it."""

    def __init__(self, config, role, log_path, tag=None):
        self.config, self.role = config, role
        self.log = GlogWriter(prefix=tag or MODEL_TAGS[role], path=log_path,
                              enabled=default_writer().enabled)
        self.solver = None
        self.stage = None

    def enter_stage(self, stage, weights_from=None, iteration=0, param=None):
        """Build the stage's solver, carrying over the weights of the previous one."""
        param = param or self.config.stage_param(self.role, stage)
        solver = get_solver(param, log=self.log, source=self.config.solvers[self.role][1])
        if weights_from is not None:
            # Weights and momentum carry over, exactly what a resume at this
            # iteration restores from the snapshot.
            solver.net.copy_from(weights_from.net.to_proto())
            for mine, theirs in zip(solver.history, weights_from.history):
                mine[...] = theirs
        solver.iter = iteration
        self.solver, self.stage = solver, stage
        return solver

    @property
    def net(self):
        return self.solver.net

    def logits(self, images):
        """The model's class scores for ``images`` (train net forward up to the logits)."""
        net = self.net
        feed(net, {self.config.mct.data_blob: images})
        net.forward_from_to(0, producing_layer(net, self.config.mct.logits_blob))
        scores = net.blobs[self.config.mct.logits_blob].data
        return scores.reshape(scores.shape[0], -1).astype(np.float64)

    def step(self, arrays):
        feed(self.net, arrays)
        self.solver.step(1)


# ---- the trainer ---------------------------------------------------------------

class MCTTrainer:
    """Runs MCT from a solver file with an ``mct_param`` section."""

    def __init__(self, solver, world=None, feeders=None):
        """``solver``: a solver file or SolverParameter with an mct_param section.
        ``feeders``: optional {"clean_data": f, "noisy_data": f} objects with
        ``next() -> (images, labels)`` and ``restore_iteration(i)`` used instead
        of the data layers (the benchmark feeds arrays held in memory); to
        estimate P_noise also "noisy_estimate" and "clean_validation"."""
        self.config = MCTConfig(solver)
        self.given_feeders = feeders
        self.world = world            # an mpi4py communicator-like object, or None
        self.rank, self.size = (world.Get_rank(), world.Get_size()) if world else (0, 1)
        self.models = {role: Model(self.config, role, self._log_path(role))
                       for role in (AUX, PRIMARY)}
        self.attach = None            # set by commands under MPI: attach(solver)

    def _log_path(self, role):
        if self.rank != 0:
            return None
        path = self.config.solvers[role][0].snapshot_prefix + ".log"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return path

    # -- set-up --
    def _local_batch(self, what):
        layer = getattr(self.config.mct, what)
        batch = (layer.data_param.batch_size if layer.HasField("data_param")
                 else layer.image_data_param.batch_size)
        if batch < self.size or batch % self.size:
            raise CaffeError(f"{self.config.source}: mct_param.{what} batch_size {batch} "
                             f"cannot be split evenly over {self.size} ranks (it is the "
                             f"global batch; make it a positive multiple of the rank count)")
        return batch // self.size

    def _build_feeders(self, whats=("clean_data", "noisy_data")):
        if self.given_feeders is not None:
            return self.given_feeders
        seed = self.config.param.random_seed
        rng.set_random_seed(seed if seed >= 0 else 1701)
        return self._data_feeders(whats)

    def _data_feeders(self, whats):
        feeders = {}
        for what in whats:
            try:
                feeders[what] = Feeder(getattr(self.config.mct, what), what,
                                       self._local_batch(what))
            except CaffeError as exc:
                raise CaffeError(f"{self.config.source}: mct_param.{what}: {exc}") from None
        return feeders

    def _check_models(self):
        """Both models must score the same classes."""
        classes = {}
        for role, model in self.models.items():
            logits = model.net.blobs.get(self.config.mct.logits_blob)
            if logits is None:
                raise CaffeError(f"{self.config.solvers[role][1]}: the train net has no "
                                 f"blob '{self.config.mct.logits_blob}' (mct_param.logits_blob)")
            classes[role] = logits.count // max(1, logits.shape[0])
        if classes[AUX] != classes[PRIMARY]:
            raise CaffeError(f"{self.config.source}: the models' class counts differ: M_a "
                             f"scores {classes[AUX]} classes, M_p {classes[PRIMARY]}")

    def _enter(self, stage, iteration, previous=None):
        for role, model in self.models.items():
            old = previous[role] if previous else None
            solver = model.enter_stage(stage, old, iteration)
            if self.attach is not None:
                self.attach(solver)
        _info(f"Iteration {iteration}: stage {stage}")

    # -- the loop --
    def train(self, resume_file=None):
        """Pretrain, calibrate, deploy; ``resume_file`` is M_p's .solverstate."""
        start = self._resume_iteration(resume_file) if resume_file else 0
        stage = PRETRAIN if start < self.config.pretrain_iter else CALIBRATE
        self.feeders = self._build_feeders()
        self._enter(stage, start)
        self._check_models()
        if resume_file:
            self._restore(resume_file, start)
        if stage == CALIBRATE:
            self.resolve_noise_rate()
        for iteration in range(start, self.config.max_iter):
            if iteration == self.config.pretrain_iter and self.models[AUX].stage == PRETRAIN:
                self._snapshot_both()
                self._enter(CALIBRATE, iteration,
                            {role: m.solver for role, m in self.models.items()})
                self.resolve_noise_rate()
            if self.models[AUX].stage == PRETRAIN:
                self._pretrain_step()
            else:
                self._calibration_step()
        results = self._finish()
        self.deploy()
        return results

    def resolve_noise_rate(self):
        """P_noise for calibration: as configured, or estimated now from M_a's
        predictions on noisy and clean validation data (``noise_rate``)."""
        if self.config.noise_rate is None:
            estimate = self._estimate_noise_rate()
            self.config.noise_rate = estimate.rate
            _info(f"P_noise estimated from M_a: {estimate.rate:.4f} (accuracy "
                  f"{estimate.accuracy:.4f} on {estimate.validation_count} clean validation "
                  f"samples, agreement {estimate.agreement:.4f} with the labels of "
                  f"{estimate.noisy_count} noisy samples)")
        _info(f"P_noise = {self.config.noise_rate:g}; global noisy batch "
              f"{self._local_batch('noisy_data') * self.size}: M_a takes "
              f"{self._counts()[0]} samples (eq. 1), M_p {self._counts()[1]} (eq. 2)")
        return self.config.noise_rate

    def _estimate_noise_rate(self):
        """Counts of M_a's matches on estimate_batches batches of each source, summed
        over the ranks; fresh feeders, so the training batches stay as they were."""
        if self.given_feeders is not None:
            feeders = {"noisy_data": self.given_feeders["noisy_estimate"],
                       "clean_validation": self.given_feeders["clean_validation"]}
        else:
            feeders = self._data_feeders(("noisy_data", "clean_validation"))
        counts = np.zeros(4, np.int64)
        for slot, what in enumerate(("noisy_data", "clean_validation")):
            for _ in range(self.config.mct.estimate_batches):
                images, labels = feeders[what].next()
                counts[2 * slot:2 * slot + 2] += noise_rate.matches(
                    self.models[AUX].logits(images), labels)
        if self.world is not None:
            from ..parallel import allgather_array
            counts = allgather_array(self.world, counts[None]).sum(axis=0)
        classes = self.models[AUX].net.blobs[self.config.mct.logits_blob].shape[1]
        return noise_rate.estimate_from_counts(*counts, classes)

    def _counts(self):
        batch = self._local_batch("noisy_data") * self.size
        return (selection.aux_sample_count(batch, self.config.noise_rate,
                                           self.config.significance),
                selection.primary_sample_count(batch, self.config.noise_rate))

    def _pretrain_step(self):
        mct = self.config.mct
        clean_images, clean_labels = self.feeders["clean_data"].next()
        noisy_images, noisy_labels = self.feeders["noisy_data"].next()
        self.models[AUX].step({mct.data_blob: clean_images, mct.label_blob: clean_labels,
                               mct.weight_blob: np.ones(len(clean_labels), np.float32)})
        self.models[PRIMARY].step({mct.data_blob: noisy_images, mct.label_blob: noisy_labels,
                                   mct.mask_blob: np.ones(len(noisy_labels), np.float32)})

    def _calibration_step(self):
        mct = self.config.mct
        clean_images, clean_labels = self.feeders["clean_data"].next()
        images, labels = self.feeders["noisy_data"].next()
        aux_logits = self.models[AUX].logits(images)
        primary_logits = self.models[PRIMARY].logits(images)
        mask_a, mask_p = self.masks(aux_logits, primary_logits, labels)
        chosen = mask_a > 0
        weights = np.concatenate([np.ones(int(chosen.sum()), np.float32),
                                  np.full(len(clean_labels), mct.clean_weight, np.float32)])
        self.models[AUX].step({
            mct.data_blob: np.concatenate([images[chosen], clean_images]),
            mct.label_blob: np.concatenate([labels[chosen], clean_labels]),
            mct.weight_blob: weights})
        self.models[PRIMARY].step({
            mct.data_blob: images, mct.label_blob: labels, mct.mask_blob: mask_p,
            mct.aux_logits_blob: aux_logits.astype(np.float32)})

    def masks(self, aux_logits, primary_logits, labels):
        """This rank's (mask_a, mask_p), ranked over the global batch."""
        confidence = selection.label_confidence(selection.softmax_rows(aux_logits),
                                                selection.softmax_rows(primary_logits),
                                                labels)
        offset = 0
        if self.world is not None:
            from ..parallel import allgather_array
            everyone = allgather_array(self.world, confidence)
            offset = self.rank * confidence.shape[0]
            confidence = everyone
        return selection.calibration_masks(confidence, self.config.noise_rate, offset,
                                           len(labels), self.config.significance)

    # -- snapshots, resume, the end --
    def _snapshot_both(self):
        for model in self.models.values():
            solver = model.solver
            if solver.is_root and solver.last_snapshot != _state_name(solver, solver.iter):
                solver.snapshot()

    def _resume_iteration(self, resume_file):
        from ..solvers.snapshots import read_state
        return read_state(resume_file).iter

    def _restore(self, resume_file, iteration):
        aux_state = _state_name(self.models[AUX].solver, iteration)
        if not os.path.isfile(aux_state):
            raise CaffeError(f"resuming from {resume_file} (iteration {iteration}) needs "
                             f"M_a's state {aux_state}, which does not exist")
        self.models[PRIMARY].solver.restore(resume_file)
        self.models[AUX].solver.restore(aux_state)
        for feeder in self.feeders.values():
            feeder.restore_iteration(iteration)
        _info(f"Resumed both models at iteration {iteration}")

    def _finish(self):
        """Final snapshot and test of both models; returns M_p's test outputs."""
        return {role: finish_solver(model.solver)
                for role, model in self.models.items()}[PRIMARY]

    def noise_only_baseline(self):
        """M_p's net and solver on the noisy labels alone; returns its final test outputs."""
        param = self.config.stage_param(PRIMARY, PRETRAIN, pretraining=False)
        param.snapshot_prefix += "_noise_only"
        model = Model(self.config, PRIMARY, None, tag="[noise-only] ")
        model.enter_stage(PRETRAIN, param=param)
        if self.attach is not None:
            self.attach(model.solver)
        feeder = self._build_feeders(["noisy_data"])["noisy_data"]
        if self.given_feeders is not None:
            feeder.restore_iteration(0)
        mct = self.config.mct
        _info("Training the noise-only baseline")
        for _ in range(self.config.max_iter):
            images, labels = feeder.next()
            model.step({mct.data_blob: images, mct.label_blob: labels})
        return finish_solver(model.solver)

    def deploy(self):
        """Write M_p alone for inference; returns (prototxt path, caffemodel path)."""
        prototxt, caffemodel = self.config.deploy_paths()
        if self.rank != 0:
            return prototxt, caffemodel
        solver = self.models[PRIMARY].solver
        net_param = deploy_net_param(self.config, solver)
        deployed = Net(net_param, caffe_pb2.TEST)     # proves the deploy net builds
        deployed.share_with(solver.net)
        write_atomically(prototxt, str(net_param).encode())
        deployed.save(caffemodel)
        _info(f"Deployed M_p: {prototxt} + {caffemodel}")
        return prototxt, caffemodel


def finish_solver(solver):
    """What Solver.solve does after its last step: final snapshot, final test
    (whose outputs of test net 0 it returns)."""
    p = solver.param
    if p.snapshot_after_train and solver.is_root and \
            solver.last_snapshot != _state_name(solver, solver.iter):
        solver.snapshot()
    results = solver.test_all() if solver.is_root and solver.test_nets else []
    solver.info("Optimization Done.", 332)
    return results[0] if results else {}


def _state_name(solver, iteration):
    return f"{solver.param.snapshot_prefix}_iter_{iteration}.solverstate"


def deploy_net_param(config, solver):
    """M_p's calibration train net reduced to images in, probabilities out.

    Keeps the data Input (batch 1) and every layer that needs no label, mask
    or soft target, then appends Softmax on the logits as ``prob``.
    """
    mct = config.mct
    state = caffe_pb2.NetState(phase=TRAIN)
    state.MergeFrom(solver.param.train_state)
    net_param = net_passes.filter_by_state(train_net_param(solver.param), state)
    data_shape = list(solver.net.blobs[mct.data_blob].shape)
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
