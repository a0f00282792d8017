"""``pycaffe_mct train`` and ``pycaffe_mct test``: Caffe's ``caffe train`` / ``caffe test``.

``train`` reads and checks the solver file, builds the nets, optionally
resumes (``--snapshot``) or fine-tunes (``--weights``) and solves.  Ctrl-C
(SIGINT) stops training by default and, as in Caffe, the stop writes a
snapshot (``snapshot_after_train`` is on by default); SIGHUP snapshots and
carries on.  A loss or parameter turning NaN/inf stops training with the
iteration and the first layer whose output went bad; the snapshots already
written stay untouched.  Under ``mpiexec -n N`` (N > 1) the solver is made
data-parallel by ``pycaffe_mct.parallel`` before training starts.
"""
import argparse
import signal

import numpy as np

from ..errors import CaffeError
from ..kernel_cache import announce_compilation
from ..layer import TEST
from ..diff_release import add_release_diffs_flag, release_diffs_once_used
from ..net import Net
from ..solvers.log import default_writer, format_number, log_to_file, logged_command, loss_note
from ..solvers.params import read_solver_param
from ..solvers.solver import NONE, SNAPSHOT, STOP, NonFiniteError, get_solver

SIGNAL_EFFECTS = (SNAPSHOT, STOP, NONE)


def _info(message, line, where="caffe.cpp"):
    default_writer().info(message, f"{where}:{line}")


def _common_flags(parser):
    parser.add_argument("--level", type=int, default=0, help="net state level")
    parser.add_argument("--stage", default="", help="net state stages, comma separated")
    parser.add_argument("--gpu", default="", help="accepted for Caffe scripts; ignored (CPU only)")
    parser.add_argument("--log", default=None, help="also append the log to this file")


def _stages(flag):
    return [s for s in flag.split(",") if s]


def _start(args):
    if args.log:
        log_to_file(args.log)
    if args.gpu:
        default_writer().warning(f"--gpu {args.gpu} ignored: pycaffe_mct runs on the CPU")
    _info("Use CPU.", 197)


class SignalActions:
    """Turns SIGINT/SIGHUP into the solver actions the flags name, while training runs."""

    def __init__(self, sigint_effect, sighup_effect):
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self.pending = []
        self.previous = {}

    def __enter__(self):
        for signum in self.effects:
            self.previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.pending.append(signum)

    def requested_action(self):
        """The action of the oldest unhandled signal, or "none"."""
        while self.pending:
            effect = self.effects[self.pending.pop(0)]
            if effect != NONE:
                return effect
        return NONE


def _parallel_if_launched():
    """``pycaffe_mct.parallel`` when mpiexec started more than one rank, else None."""
    from ..parallel.launch import mpi_world_size
    size = mpi_world_size()
    if size <= 1:
        return None
    try:
        from .. import parallel
    except ImportError as exc:
        raise CaffeError(f"started as one of {size} MPI ranks, but data-parallel training "
                         f"is unavailable: {exc}") from None
    return parallel


def build_train_solver(args):
    """The solver ``train`` flags describe, checked before any net is built."""
    if args.snapshot and args.weights:
        raise CaffeError("give --snapshot to resume training or --weights to fine-tune, "
                         "not both")
    param, source = read_solver_param(args.solver)
    param.train_state.level = args.level
    param.train_state.stage.extend(_stages(args.stage))
    if args.snapshot or args.weights:
        param.ClearField("weights")
    if args.weights:
        param.weights.append(args.weights)
    if args.iterations is not None:
        param.max_iter = args.iterations
    return get_solver(param, source=source)


@logged_command
def train_main(argv):
    parser = argparse.ArgumentParser(prog="pycaffe_mct train",
                                     description="Train or fine-tune a model.")
    parser.add_argument("--solver", required=True, help="solver prototxt")
    parser.add_argument("--snapshot", help=".solverstate to resume from")
    parser.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma separated")
    parser.add_argument("--sigint_effect", choices=SIGNAL_EFFECTS, default=STOP,
                        help="what Ctrl-C does (default: stop, which snapshots)")
    parser.add_argument("--sighup_effect", choices=SIGNAL_EFFECTS, default=SNAPSHOT,
                        help="what SIGHUP does (default: snapshot)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="train to this iteration instead of the solver's max_iter")
    add_release_diffs_flag(parser)
    _common_flags(parser)
    args = parser.parse_args(argv)
    parallel = _parallel_if_launched()
    if parallel:
        parallel.init_parallel()     # before nets are built: data partition, rank-0 log
    _start(args)
    announce_compilation(default_writer())
    solver = build_train_solver(args)
    if args.release_diffs:
        release_diffs_once_used(solver.net)
    if parallel:
        parallel.attach_data_parallel(solver)
    with SignalActions(args.sigint_effect, args.sighup_effect) as actions:
        solver.set_action_function(actions.requested_action)
        if args.snapshot:
            _info(f"Resuming from {args.snapshot}", 226)
            solver.restore(args.snapshot)
        _info("Starting Optimization", 230)
        try:
            solver.solve()
        except NonFiniteError as exc:
            kept = solver.last_snapshot or args.snapshot
            note = f"the last good snapshot is {kept}" if kept else "no snapshot was written"
            raise NonFiniteError(f"training stopped: {exc}; {note}") from None
    _info("Optimization Done.", 250)
    return 0


@logged_command
def test_main(argv):
    parser = argparse.ArgumentParser(prog="pycaffe_mct test",
                                     description="Score a model on its TEST-phase batches.")
    parser.add_argument("--model", required=True, help="net prototxt")
    parser.add_argument("--weights", required=True, help="caffemodel to score")
    parser.add_argument("--iterations", type=int, default=50, help="batches to run")
    _common_flags(parser)
    args = parser.parse_args(argv)
    _start(args)
    net = Net(args.model, TEST, weights=args.weights, level=args.level,
              stages=_stages(args.stage))
    _info(f"Running for {args.iterations} iterations.", 281)
    sums, loss = None, 0.0
    for batch in range(args.iterations):
        loss += net.forward_prefilled()
        values = [net.blobs[name].data.astype(np.float32).ravel() for name in net.outputs]
        for name, array in zip(net.outputs, values):
            for value in array:
                _info(f"Batch {batch}, {name} = {format_number(value)}", 303)
        sums = values if sums is None else [s + v for s, v in zip(sums, values)]
    _info(f"Loss: {format_number(loss / max(args.iterations, 1))}", 307)
    for name, total in zip(net.outputs, sums or []):
        weight = net.blob_loss_weights[name]
        for value in total / np.float32(args.iterations):
            _info(f"{name} = {format_number(value)}{loss_note(weight, value)}", 319)
    return 0
