"""The Solver: builds the train and test nets and runs Caffe's training loop.

One iteration (``step``) is Caffe's: clear parameter gradients, test if due,
``on_start`` callbacks, forward/backward ``iter_size`` times (gradients
accumulate), display, ``on_gradients_ready`` callbacks (where data-parallel
training averages gradients), then ``apply_update``: learning rate, gradient
clipping, normalisation by ``iter_size``, L1/L2 regularisation, and the
per-type ``compute_update`` that subclasses implement (see ``update_rules``).

The global generator is re-derived from the seed and the iteration number at
the start of every iteration, so a run resumed from a snapshot draws exactly
the numbers an uninterrupted run draws, and ends with bitwise equal weights.

The state other code coordinates through is public and documented here, so
that trainers (MCT) and data parallelism never reach into a solver:

* ``iter`` and ``current_step`` (read them; move them with ``set_position``,
  which also puts the train net's data layers on that iteration's batches);
* ``state_arrays()``: the parameters and the update history, the arrays a
  snapshot holds, to be copied or broadcast into (``copy_state_from``);
* ``set_rank(rank)``: this solver's rank among data-parallel replicas (only
  rank 0 logs, tests and snapshots; each rank draws its own random stream);
* ``local_action_request()`` and ``set_action_arbiter(f)``: the stop/snapshot
  request of this process, and who decides the action all replicas take;
* ``snapshot_path(iteration)`` and ``snapshot_if_new()``.
"""
import math
import os
import time

import numpy as np

from .. import rng
from ..errors import CaffeError
from ..layer import TEST, TRAIN
from ..net import Net
from ..proto import caffe_pb2
from ..proto_io import read_prototxt
from ..registry import TypeRegistry
from . import snapshots
from .log import default_writer, format_number, loss_note
from .params import check_solver_param, learning_rate, read_solver_param

NONE, SNAPSHOT, STOP = "none", "snapshot", "stop"

SOLVERS = TypeRegistry("solver")
register_solver = SOLVERS.register


def solver_types():
    """The registered solver type names, sorted."""
    return SOLVERS.names()


def get_solver(solver, log=None, source=None):
    """The solver that ``type`` names, from a solver prototxt path or SolverParameter
    (``source``: the file a message came from, for error messages and snapshot names)."""
    param, read_source = read_solver_param(solver)
    source = source or read_source
    check_solver_param(param, source, SOLVERS)
    return SOLVERS.get(param.type)(param, source=source, log=log)


class NonFiniteError(CaffeError):
    """The loss or a parameter became NaN or infinite."""


class _PlainCallbacks:
    """pycaffe's ``add_callback(on_start, on_gradients_ready)``: functions of no argument."""

    def __init__(self, on_start, on_gradients_ready):
        self._start, self._ready = on_start, on_gradients_ready

    def on_start(self, solver):
        self._start()

    def on_gradients_ready(self, solver):
        self._ready()


class Solver:
    """Base class of every solver type; subclasses implement ``compute_update``."""

    type_name = None
    history_sets = 1   # Adam and AdaDelta keep a second history per parameter

    def __init__(self, solver, source=None, log=None, rank=0):
        param, read_source = read_solver_param(solver)
        source = source or read_source
        if self.type_name is not None:
            param.type = self.type_name     # SGDSolver(file) is SGD, whatever the file says
        check_solver_param(param, source, SOLVERS)
        self.check_param(param, source)
        self.param, self.source = param, source
        self.rank = rank
        self.log = log or default_writer()
        self.callbacks = []
        self._action_function = None
        self._action_arbiter = None
        self.requested_early_exit = False
        self._last_snapshot = None
        if param.random_seed >= 0:
            rng.set_random_seed(param.random_seed + rank)
        self.info("Initializing solver from parameters: \n" + str(param).rstrip(), 45)
        if param.HasField("solver_mode") and param.solver_mode == caffe_pb2.SolverParameter.GPU:
            self.info("solver_mode GPU (device_id "
                      f"{param.device_id}) is ignored: pycaffe_mct runs on the CPU", 0)
        snapshots.prepare_prefix(param, source)
        snapshots.remove_stale_temporaries_of(self)
        self.net = self._train_net()
        self.test_nets = self._test_nets()
        self.info("Solver scaffolding done.", 77)
        self.iter = 0
        self.current_step = 0
        self.history = [np.zeros(blob.shape, np.float32)
                        for _ in range(self.history_sets) for blob in self.net.learnable_params]
        self._losses, self._smoothed_loss = [], 0.0
        # The display rate spans step() calls, so a trainer stepping one
        # iteration at a time (MCT) still reports iterations per second.
        self._iterations_last, self._display_timer = 0, time.perf_counter()

    # ---- set-up -----------------------------------------------------------
    @classmethod
    def check_param(cls, param, source):
        """Per-type checks of the solver parameters (Caffe's constructor sanity checks)."""

    @property
    def is_root(self):
        """Rank 0 of the replicas: the one that logs, tests and writes snapshots."""
        return self.rank == 0

    def set_rank(self, rank):
        """Make this solver replica ``rank`` of a data-parallel job: only rank 0 logs,
        tests and snapshots, and each rank's random stream is reseeded with its rank."""
        self.rank = int(rank)

    def info(self, message, line, where="solver.cpp"):
        """Log ``message`` on the root rank, tagged like Caffe's ``where:line``."""
        if self.is_root:
            self.log.info(message, f"{where}:{line}")

    def _net_state(self, phase, file_state, override):
        state = caffe_pb2.NetState(phase=phase)
        state.MergeFrom(file_state)
        if override is not None:
            state.MergeFrom(override)
        return state

    def _load_weights(self, net):
        for models in self.param.weights:
            for model in (m.strip() for m in models.split(",")):
                self.info(f"Finetuning from {model}", 72)
                net.copy_from(model)

    def _train_net(self):
        p = self.param
        if p.HasField("train_net_param") or p.HasField("net_param"):
            field = "train_net_param" if p.HasField("train_net_param") else "net_param"
            network = getattr(p, field)
            self.info(f"Creating training net specified in {field}.", 92)
        else:
            network = p.train_net if p.HasField("train_net") else p.net
            self.info(f"Creating training net from net file: {network}", 102)
        file_state = _file_state(network)
        net = Net(network, state=self._net_state(TRAIN, file_state, p.train_state))
        self._load_weights(net)
        return net

    def _test_nets(self):
        p = self.param
        sources = [("test_net_param", n) for n in p.test_net_param]
        sources += [(f"test_net file: {n}", n) for n in p.test_net]
        generic = len(p.test_iter) - len(sources)
        if p.HasField("net_param"):
            sources += [("net_param", p.net_param)] * generic
        elif p.HasField("net"):
            sources += [(f"net file: {p.net}", p.net)] * generic
        nets = []
        for i, (described, network) in enumerate(sources):
            override = p.test_state[i] if p.test_state else None
            state = self._net_state(TEST, _file_state(network), override)
            self.info(f"Creating test net (#{i}) specified by {described}", 190)
            net = Net(network, state=state)
            self._load_weights(net)
            nets.append(net)
        return nets

    def add_callback(self, callback, on_gradients_ready=None):
        """Add an object with optional ``on_start(solver)`` / ``on_gradients_ready(solver)``.

        pycaffe's form ``add_callback(on_start, on_gradients_ready)`` (two functions
        of no argument) works too.
        """
        if on_gradients_ready is not None:
            callback = _PlainCallbacks(callback, on_gradients_ready)
        self.callbacks.append(callback)

    def set_action_function(self, function):
        """``function()`` returns "none", "snapshot" or "stop"; polled every iteration."""
        self._action_function = function

    def local_action_request(self):
        """What this process's action function asks for now ("none" without one)."""
        return self._action_function() if self._action_function else NONE

    def set_action_arbiter(self, arbiter):
        """Let ``arbiter()`` decide the action the solver takes after each update and
        while testing, instead of this process's own request: data-parallel replicas
        must all stop (or snapshot) at the same iteration."""
        self._action_arbiter = arbiter

    def _requested_action(self):
        return self._action_arbiter() if self._action_arbiter else self.local_action_request()

    def _run_callbacks(self, hook):
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self)

    # ---- the loop ---------------------------------------------------------
    def step(self, iters):
        """Run ``iters`` iterations (fewer if a stop is requested)."""
        p = self.param
        start_iter, stop_iter = self.iter, self.iter + iters
        self._losses, self._smoothed_loss = [], 0.0
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            rng.reseed(self.iter, self.rank)
            if p.test_interval and self.iter % p.test_interval == 0 and \
                    (self.iter > 0 or p.test_initialization):
                if self.is_root:
                    self.test_all()
                if self.requested_early_exit:
                    break
            self._run_callbacks("on_start")
            display = bool(p.display) and self.iter % p.display == 0
            loss = sum(self.net.forward_backward() for _ in range(p.iter_size)) / p.iter_size
            self._stop_if_not_finite(loss)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                self._display()
                if p.debug_info:
                    self._log_debug_info()
            self._run_callbacks("on_gradients_ready")
            self.apply_update()
            self._stop_if_params_not_finite()
            request = self._requested_action()
            if (p.snapshot and self.iter % p.snapshot == 0 and self.is_root) or \
                    request == SNAPSHOT:
                self.snapshot()
            if request == STOP:
                self.requested_early_exit = True
                break

    def solve(self, resume_file=None):
        """Train to ``max_iter`` (Caffe's Solver::Solve), optionally resuming first."""
        p = self.param
        self.info(f"Solving {self.net.name}", 289)
        self.info(f"Learning Rate Policy: {p.lr_policy}", 290)
        self.requested_early_exit = False
        if resume_file:
            self.info(f"Restoring previous solver status from {resume_file}", 296)
            self.restore(resume_file)
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and self.is_root and \
                (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            self.info("Optimization stopped early.", 311)
            return
        if p.display and self.iter % p.display == 0:
            rng.reseed(self.iter, self.rank)
            loss = self.net.forward_prefilled()
            self._update_smoothed_loss(loss, self.iter)
            self.info(f"Iteration {self.iter}, loss = {format_number(self._smoothed_loss)}", 327)
        if p.test_interval and self.iter % p.test_interval == 0 and self.is_root:
            self.test_all()
        self.info("Optimization Done.", 332)

    def _update_smoothed_loss(self, loss, start_iter):
        """Caffe's running mean of the last ``average_loss`` losses."""
        average = self.param.average_loss
        if len(self._losses) < average:
            self._losses.append(loss)
            size = len(self._losses)
            self._smoothed_loss = (self._smoothed_loss * (size - 1) + loss) / size
        else:
            index = (self.iter - start_iter) % average
            self._smoothed_loss += (loss - self._losses[index]) / average
            self._losses[index] = loss

    @property
    def smoothed_loss(self):
        return self._smoothed_loss

    def _display(self):
        now = time.perf_counter()
        lapse = now - self._display_timer
        self._display_timer = now
        per_s = (self.iter - self._iterations_last) / (lapse or 1.0)
        self.info(f"Iteration {self.iter} ({format_number(per_s)} iter/s, "
                  f"{format_number(lapse)}s/{self.param.display} iters), "
                  f"loss = {format_number(self._smoothed_loss)}", 239)
        self._iterations_last = self.iter
        index = 0
        for name in self.net.outputs:
            weight = self.net.blob_loss_weights[name]
            for value in self.net.blobs[name].data.ravel():
                self.info(f"    Train net output #{index}: {name} = "
                          f"{format_number(value)}{loss_note(weight, value)}", 258)
                index += 1

    def _log_debug_info(self):
        """Caffe's debug_info: mean absolute values of tops, parameter data and diffs."""
        for facts in self.net.layer_facts:
            layer = facts.layer
            for name, blob in zip(facts.top_names, facts.tops):
                self.info(f"    [Forward] Layer {layer.name}, top blob {name} data: "
                          f"{format_number(np.abs(blob.data).mean())}", 0, "net.cpp")
            for i, blob in enumerate(layer.blobs):
                self.info(f"    [Backward] Layer {layer.name}, param blob {i} diff: "
                          f"{format_number(np.abs(blob.diff).mean())}", 0, "net.cpp")

    # ---- testing ----------------------------------------------------------
    def test_all(self):
        """Test every test net; returns one {output name: mean values} dict per net."""
        results = []
        for index in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            results.append(self.test(index))
        return results

    def test(self, index=0):
        """Run test net ``index`` for its ``test_iter`` batches and log the mean outputs."""
        self.info(f"Iteration {self.iter}, Testing net (#{index})", 346)
        net = self.test_nets[index]
        net.share_with(self.net)
        iterations = self.param.test_iter[index]
        sums, loss = None, np.float32(0)
        for _ in range(iterations):
            if self._handle_requests_while_testing():
                self.info("Test interrupted.", 394)
                return None
            batch_loss = net.forward_prefilled()
            if self.param.test_compute_loss:
                loss += np.float32(batch_loss)
            values = [net.blobs[name].data.astype(np.float32).ravel() for name in net.outputs]
            sums = values if sums is None else [s + v for s, v in zip(sums, values)]
        if self.param.test_compute_loss:
            self.info(f"Test loss: {format_number(loss / iterations)}", 398)
        means = {}
        index_out = 0
        for name, total in zip(net.outputs, sums or []):
            weight = net.blob_loss_weights[name]
            means[name] = total / np.float32(iterations)
            for value in means[name]:
                self.info(f"    Test net output #{index_out}: {name} = "
                          f"{format_number(value)}{loss_note(weight, value)}", 413)
                index_out += 1
        return means

    def _handle_requests_while_testing(self):
        request = self._requested_action()
        while request != NONE:
            if request == SNAPSHOT:
                self.snapshot()
            elif request == STOP:
                self.requested_early_exit = True
            request = self._requested_action()
        return self.requested_early_exit

    # ---- the update -------------------------------------------------------
    def apply_update(self):
        """Learning rate, clipping, normalise, regularise, ``compute_update``, then step."""
        p = self.param
        rate, step = learning_rate(p, self.iter, self.current_step)
        if p.lr_policy == "multistep" and step != self.current_step:
            self.info(f"MultiStep Status: Iteration {self.iter}, step = {step}", 65,
                      "sgd_solver.cpp")
        self.current_step = step
        if p.display and self.iter % p.display == 0:
            self.info(f"Iteration {self.iter}, lr = {format_number(rate)}", 112,
                      "sgd_solver.cpp")
        self.clip_gradients()
        for index, blob in enumerate(self.net.learnable_params):
            self.normalize(index, blob)
            self.regularize(index, blob)
            self.compute_update(index, blob, rate)
        for blob in self.net.learnable_params:
            blob.data[...] -= blob.diff
        self.iter += 1

    def clip_gradients(self):
        """Scale all gradients down so their joint L2 norm is at most clip_gradients."""
        limit = self.param.clip_gradients
        if limit < 0:
            return
        sumsq = sum(float(np.dot(b.diff.ravel(), b.diff.ravel()))
                    for b in self.net.learnable_params)
        norm = np.float32(math.sqrt(sumsq))
        if norm > limit:
            factor = np.float32(limit) / norm
            self.info(f"Gradient clipping: scaling down gradients (L2 norm "
                      f"{format_number(norm)} > {format_number(limit)}) by scale factor "
                      f"{format_number(factor)}", 98, "sgd_solver.cpp")
            for blob in self.net.learnable_params:
                blob.diff[...] *= factor

    def normalize(self, index, blob):
        """Undo the sum over ``iter_size`` passes."""
        if self.param.iter_size != 1:
            blob.diff[...] *= np.float32(1.0 / self.param.iter_size)

    def regularize(self, index, blob):
        """Add weight decay (L2: decay * w, L1: decay * sign(w)) to the gradient."""
        decay = np.float32(self.param.weight_decay * self.net.learnables[index].decay_mult)
        if not decay:
            return
        if self.param.regularization_type == "L2":
            blob.diff[...] += decay * blob.data
        else:
            blob.diff[...] += decay * np.sign(blob.data)

    def local_rate(self, index, rate):
        return np.float32(rate) * np.float32(self.net.learnables[index].lr_mult)

    def history_pair(self, index):
        """Both histories of parameter ``index`` (for types with ``history_sets = 2``)."""
        return self.history[index], self.history[index + len(self.net.learnable_params)]

    def compute_update(self, index, blob, rate):
        """Turn ``blob.diff`` into the step to subtract from ``blob.data``."""
        raise NotImplementedError

    # ---- non-finite values ------------------------------------------------
    def _stop_if_not_finite(self, loss):
        if math.isfinite(loss):
            return
        raise NonFiniteError(f"iteration {self.iter}: the loss is {loss}; "
                             f"{self._first_non_finite_output()}")

    def _stop_if_params_not_finite(self):
        for index, blob in enumerate(self.net.learnable_params):
            if not np.isfinite(blob.data).all():
                raise NonFiniteError(
                    f"iteration {self.iter - 1}: parameter {self.param_names()[index]} became "
                    f"non-finite in the update; {self._first_non_finite_output()}")

    def _first_non_finite_output(self):
        for facts in self.net.layer_facts:
            for blob in facts.tops:
                if not np.isfinite(blob.data).all():
                    return f"the first layer whose output is non-finite is " \
                           f"'{facts.layer.name}' (type {facts.layer.type})"
        return "every layer output is finite (the gradients are not)"

    def param_names(self):
        """``layer[i]`` for every learnable parameter, in history order."""
        layers = self.net.layers
        return [f"{layers[learnable.layer_index].name}[{learnable.param_index}]"
                for learnable in self.net.learnables]

    # ---- the training state ----------------------------------------------
    def state_arrays(self):
        """The training state's arrays in a fixed order: every learnable parameter's
        data, then every history blob.  With ``iter`` and ``current_step`` they are all
        a snapshot holds; writing into them (a copy, an MPI broadcast) sets the state."""
        return [blob.data for blob in self.net.learnable_params] + list(self.history)

    def set_position(self, iteration, current_step=0):
        """Continue at ``iteration`` (and the multistep policy's ``current_step``); the
        train net's data layers move to that iteration's batches."""
        self.iter, self.current_step = int(iteration), int(current_step)
        self.net.restore_iteration(self.iter, self.param.iter_size)
        self._iterations_last, self._display_timer = self.iter, time.perf_counter()

    def copy_state_from(self, other):
        """Take ``other``'s parameters, history and position (a solver of the same net
        and type; e.g. the same model's solver of the previous MCT stage)."""
        for mine, theirs in zip(self.state_arrays(), other.state_arrays()):
            mine[...] = theirs
        self.set_position(other.iter, other.current_step)

    # ---- snapshots --------------------------------------------------------
    def snapshot_path(self, iteration, extension=".solverstate"):
        """``<prefix>_iter_<iteration><extension>``: where a snapshot of that iteration goes."""
        return f"{self.param.snapshot_prefix}_iter_{iteration}{extension}"

    def snapshot(self):
        """Write ``<prefix>_iter_N.caffemodel`` and ``.solverstate``; returns the state path."""
        self._last_snapshot = snapshots.write_snapshot(self)
        return self._last_snapshot

    @property
    def last_snapshot(self):
        """The .solverstate this solver wrote last (None before the first)."""
        return self._last_snapshot

    def snapshot_if_new(self):
        """Snapshot on the root rank unless this iteration's snapshot is written already."""
        if self.is_root and self._last_snapshot != self.snapshot_path(self.iter):
            self.snapshot()

    def restore(self, state_file):
        """Continue from a ``.solverstate`` (ours or BVLC Caffe's)."""
        snapshots.restore(self, state_file)


def _file_state(network):
    """The NetState a net's own prototxt declares (its ``state`` field)."""
    if isinstance(network, caffe_pb2.NetParameter):
        return network.state
    if not os.path.isfile(network):
        raise CaffeError(f"net file '{network}' does not exist")
    return read_prototxt(network, caffe_pb2.NetParameter()).state
