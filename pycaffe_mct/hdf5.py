"""Caffe's HDF5 files, through h5py (the optional extra ``[hdf5]``).

Weights (``Net::ToHDF5``): group ``data`` holds one group per layer, named as
the layer, holding float32 datasets ``0``, ``1``, ... (its blobs, each in its
own shape; a shared parameter only in its owner's group); ``diff`` the same
for gradients when asked.  Solver state (``.solverstate.h5``): int datasets
``iter`` and ``current_step`` of shape (1,), the string ``learned_net`` and a
group ``history`` of float32 datasets ``0``, ``1``, ....  Files are built in
memory and written through a temporary file and a rename.
"""
import io
import os

import numpy as np

from .errors import CaffeError, ModelFileError, install_command
from .proto import caffe_pb2
from .proto_io import write_atomically

EXTRA_HINT = install_command("hdf5")


def h5py_missing_reason(what):
    """None when h5py can be imported, else a sentence naming the extra to install."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        return f"{what} needs h5py, which is not installed: {EXTRA_HINT}"
    return None


def h5py_module(what):
    """The h5py module, or a CaffeError naming the extra that installs it."""
    reason = h5py_missing_reason(what)
    if reason is not None:
        raise CaffeError(reason)
    import h5py
    return h5py


def is_hdf5_file(path):
    """Whether ``path`` starts with HDF5's signature (Caffe asks H5Fis_hdf5)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _write_file(path, what, fill):
    """Build an HDF5 file in memory with ``fill(h5py.File)``, then write it atomically."""
    h5py = h5py_module(what)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        fill(handle)
    write_atomically(path, buffer.getvalue())


def _open(path, what):
    h5py = h5py_module(what)
    path = os.fspath(path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read as HDF5: {exc}") from None


def read_float_dataset(dataset, where):
    """A dataset's values as float32, refusing what Caffe refuses (strings, compounds...)."""
    if dataset.dtype.kind not in "fiub":
        raise ModelFileError(f"{where}: dataset '{dataset.name}' has type {dataset.dtype}; "
                             f"only float and integer datasets are supported")
    return np.asarray(dataset[()], dtype=np.float32)


# ---- weights ----------------------------------------------------------------
def save_net(net, path, write_diff=False):
    """Write ``net``'s parameters in Caffe's HDF5 layout (``Net::ToHDF5``)."""
    def fill(handle):
        data = handle.create_group("data")
        diff = handle.create_group("diff") if write_diff else None
        for layer_index, param_index, owned, blob in _layer_params(net):
            name = net.layers[layer_index].name
            data_group = data.require_group(name)
            if owned:
                data_group.create_dataset(str(param_index), data=blob.data)
            if diff is not None:
                diff.require_group(name).create_dataset(str(param_index), data=blob.diff)
        for layer in net.layers:      # Caffe writes a group for every layer
            data.require_group(layer.name)
            if diff is not None:
                diff.require_group(layer.name)
    _write_file(path, "saving weights as HDF5", fill)


def _layer_params(net):
    """(layer index, blob index, owns its storage, blob) for every parameter blob."""
    for facts in net.layer_facts:
        for param_index, param in enumerate(facts.params):
            yield facts.index, param_index, param.owns_storage, param.blob


def load_net(net, path):
    """Copy weights from a Caffe HDF5 file into same-named layers (CopyTrainedLayersFromHDF5)."""
    path = os.fspath(path)
    with _open(path, "loading HDF5 weights") as handle:
        if "data" not in handle:
            raise ModelFileError(f"{path}: no group 'data': not a Caffe HDF5 weights file")
        data = handle["data"]
        owners = {(layer, param): owned for layer, param, owned, _ in _layer_params(net)}
        for layer_index, layer in enumerate(net.layers):
            if layer.name not in data:
                continue
            group = data[layer.name]
            stored = [key for key in group if key.isdigit()]
            if len(stored) > len(layer.blobs):
                raise ModelFileError(f"{path}: layer '{layer.name}' has {len(stored)} blobs in "
                                     f"the file but {len(layer.blobs)} in the net")
            for param_index, blob in enumerate(layer.blobs):
                key = str(param_index)
                if key not in group:
                    if owners[(layer_index, param_index)]:
                        raise ModelFileError(f"{path}: layer '{layer.name}' lacks blob "
                                             f"{param_index}")
                    continue        # shared: its owner's group holds it
                values = read_float_dataset(group[key], path)
                if values.shape != blob.shape:
                    raise ModelFileError(
                        f"{path}: cannot copy param {param_index} of layer '{layer.name}': "
                        f"the file has shape {values.shape}, the net expects {blob.shape}")
                blob.data[...] = values


# ---- solver state -----------------------------------------------------------
def write_solver_state(path, state, history):
    """Write a SolverState's fields and the ``history`` arrays as Caffe's .solverstate.h5."""
    def fill(handle):
        handle.create_dataset("iter", data=np.array([state.iter], np.int32))
        # H5LTmake_dataset_string: a scalar, null-terminated fixed-length string.
        text = state.learned_net.encode("utf-8") + b"\0"
        handle.create_dataset("learned_net", data=np.array(text, dtype=f"S{len(text)}"))
        handle.create_dataset("current_step", data=np.array([state.current_step], np.int32))
        group = handle.create_group("history")
        for index, values in enumerate(history):
            group.create_dataset(str(index), data=np.asarray(values, np.float32))
    _write_file(path, "snapshot_format: HDF5", fill)


def read_solver_state(path):
    """A Caffe .solverstate.h5 as a SolverState message (history blobs included)."""
    path = os.fspath(path)
    state = caffe_pb2.SolverState()
    with _open(path, "restoring an HDF5 solver state") as handle:
        for name in ("iter", "current_step", "history"):
            if name not in handle:
                raise ModelFileError(f"{path}: no '{name}': not a Caffe HDF5 solver state")
        state.iter = int(np.asarray(handle["iter"][()]).reshape(-1)[0])
        state.current_step = int(np.asarray(handle["current_step"][()]).reshape(-1)[0])
        if "learned_net" in handle:
            raw = handle["learned_net"][()]
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            state.learned_net = text.rstrip("\0")
        history = handle["history"]
        for index in range(len(history)):
            if str(index) not in history:
                raise ModelFileError(f"{path}: history has no dataset '{index}'")
            values = read_float_dataset(history[str(index)], path)
            proto = state.history.add()
            proto.shape.dim.extend(values.shape)
            proto.data.extend(values.ravel().tolist())
    return state
