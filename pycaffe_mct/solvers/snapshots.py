"""Snapshots in Caffe's formats: ``<prefix>_iter_N.caffemodel`` + ``.solverstate``, or
with ``snapshot_format: HDF5`` ``.caffemodel.h5`` + ``.solverstate.h5`` (pycaffe_mct.hdf5).

The SolverState holds ``iter``, ``learned_net`` (the caffemodel's name exactly
as the prefix spells it, so Caffe finds it from the same working directory),
``current_step`` and one history blob per learnable parameter (two per
parameter for Adam and AdaDelta: first all ``m``, then all ``v``).  Both files
are written through a temporary file and a rename, the caffemodel first, so a
crash never leaves a state that points at a half-written model.
"""
import os

from .. import hdf5
from ..blob import proto_array, proto_shape
from ..errors import CaffeError, ModelFileError
from ..proto import caffe_pb2
from ..proto_io import read_binary_proto, remove_stale_temporaries, write_binary_proto


def prepare_prefix(param, source):
    """Caffe's snapshot_prefix rules: default to the solver file's name, a directory
    gets the solver file's stem; then make sure the directory exists and is writable."""
    solver_file = source if os.path.isfile(source) else None
    if not param.HasField("snapshot_prefix") and solver_file:
        param.snapshot_prefix = os.path.splitext(solver_file)[0]
    elif param.snapshot_prefix and os.path.isdir(param.snapshot_prefix) and solver_file:
        stem = os.path.splitext(os.path.basename(solver_file))[0]
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
    if not param.snapshot_prefix:
        return
    directory = os.path.dirname(param.snapshot_prefix) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CaffeError(f"{source}: cannot create the snapshot directory '{directory}' "
                         f"of snapshot_prefix '{param.snapshot_prefix}': {exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise CaffeError(f"{source}: cannot write to snapshot_prefix "
                         f"'{param.snapshot_prefix}'; make sure the directory is writable")


def remove_stale_temporaries_of(solver):
    """Remove the temporary snapshot files a killed run left (see proto_io).

    Only MPI rank 0, the one rank that writes snapshots, looks: another rank on
    another host could not tell a live writer's file from a dead one's.
    """
    from ..parallel.launch import mpi_rank       # reads the environment only
    if solver.param.snapshot_prefix and mpi_rank() == 0:
        for path in remove_stale_temporaries(solver.param.snapshot_prefix):
            solver.info(f"Removed {path}: a temporary file an interrupted snapshot left", 0,
                        "snapshots.py")


def write_snapshot(solver):
    """Write the solver's weights and state in its snapshot_format; returns the state path."""
    hdf5_format = solver.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
    suffix = ".h5" if hdf5_format else ""
    model_file = solver.snapshot_path(solver.iter, ".caffemodel" + suffix)
    state = caffe_pb2.SolverState(iter=solver.iter, learned_net=model_file,
                                  current_step=solver.current_step)
    state_file = solver.snapshot_path(solver.iter, ".solverstate" + suffix)
    if hdf5_format:
        solver.info(f"Snapshotting to HDF5 file {model_file}", 474)
        solver.net.save_hdf5(model_file, write_diff=solver.param.snapshot_diff)
        solver.info(f"Snapshotting solver state to HDF5 file {state_file}", 296,
                    "sgd_solver.cpp")
        hdf5.write_solver_state(state_file, state, solver.history)
        return state_file
    solver.info(f"Snapshotting to binary proto file {model_file}", 464)
    write_binary_proto(model_file, solver.net.to_proto(write_diff=solver.param.snapshot_diff))
    for history in solver.history:
        proto = state.history.add()
        proto.shape.dim.extend(history.shape)
        proto.data.extend(history.ravel().tolist())
    solver.info(f"Snapshotting solver state to binary proto file {state_file}", 284,
                "sgd_solver.cpp")
    write_binary_proto(state_file, state)
    return state_file


def read_state(state_file):
    """The SolverState in ``state_file`` (Caffe's rule: a name ending in .h5 is HDF5)."""
    state_file = os.fspath(state_file)
    if state_file.endswith(".h5"):
        return hdf5.read_solver_state(state_file)
    return read_binary_proto(state_file, caffe_pb2.SolverState())


def learned_net_path(state, state_file):
    """Where the state's caffemodel is: as written (relative to the working
    directory, as Caffe resolves it), else next to the state file."""
    name = state.learned_net
    if os.path.isfile(name):
        return name
    beside = os.path.join(os.path.dirname(os.path.abspath(state_file)), os.path.basename(name))
    if os.path.isfile(beside):
        return beside
    raise ModelFileError(f"{state_file}: its learned_net '{name}' is found neither in "
                         f"{os.getcwd()} nor next to the state file")


def check_history_fits(solver, state, state_file):
    """Refuse, listing names and shapes, a state made for another net or solver type."""
    wanted = [h.shape for h in solver.history]
    found = [proto_shape(h) for h in state.history]
    if wanted == found:
        return
    names = solver.param_names()
    sets = solver.history_sets
    expected = ", ".join(f"{names[i % len(names)]} {tuple(s)}" for i, s in enumerate(wanted))
    given = ", ".join(str(tuple(s)) for s in found) or "none"
    raise ModelFileError(
        f"{state_file}: this solver state does not fit net '{solver.net.name}' with a "
        f"{solver.param.type} solver: it holds {len(found)} history blobs ({given}); "
        f"the solver needs {len(wanted)} ({sets} per learnable parameter): {expected}")


def restore(solver, state_file):
    """Load a solver state (and its learned_net) into ``solver``."""
    state = read_state(state_file)
    check_history_fits(solver, state, state_file)
    if state.HasField("learned_net"):
        solver.net.copy_from(learned_net_path(state, state_file))
    solver.info("SGDSolver: restoring history", 331, "sgd_solver.cpp")
    for history, proto in zip(solver.history, state.history):
        history[...] = proto_array(proto).reshape(history.shape)
    solver.set_position(state.iter, state.current_step)
