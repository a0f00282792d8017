"""Snapshots: Caffe's file layout, bit-exact resume, BVLC's solver state, bad states."""
import shutil
import sys

import h5py
import numpy as np
import pytest

from pycaffe_mct.blob import proto_array, proto_shape
from pycaffe_mct.errors import CaffeError, ModelFileError
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto
from solver_helpers import CONSTANT_NET, quiet_solver, weights_of, write_solver

RESUME_FIELDS = {"type": '"SGD"', "momentum": 0.9, "weight_decay": 0.001,
                 "lr_policy": '"multistep"', "stepvalue": [2, 5], "gamma": 0.5}


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_resume_is_bit_exact(tmp_path, solver_type):
    fields = dict(RESUME_FIELDS, type=f'"{solver_type}"', max_iter=8, snapshot=4)
    straight, _ = quiet_solver(write_solver(tmp_path, **fields))
    straight.solve()
    state_file = tmp_path / "snap_iter_4.solverstate"
    assert state_file.exists()
    resumed, _ = quiet_solver(write_solver(tmp_path, name="again.prototxt", **fields))
    resumed.solve(str(state_file))
    assert resumed.iter == straight.iter == 8
    assert resumed.current_step == straight.current_step == 2
    for a, b in zip(weights_of(straight.net), weights_of(resumed.net)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(a, b)


def test_state_has_caffes_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fields = dict(RESUME_FIELDS, type='"Adam"', snapshot_prefix='"out/run"')
    solver, log = quiet_solver(write_solver(tmp_path, **fields))
    solver.step(6)
    state_file = solver.snapshot()
    assert state_file == "out/run_iter_6.solverstate"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["run_iter_6.caffemodel", "run_iter_6.solverstate"]        # no temporary files left
    state = read_binary_proto(state_file, caffe_pb2.SolverState())
    assert state.iter == 6 and state.current_step == 2
    assert state.learned_net == "out/run_iter_6.caffemodel"         # relative, as Caffe writes
    shapes = [tuple(b.shape) for b in solver.net.learnable_params]
    assert [proto_shape(h) for h in state.history] == shapes * 2    # Adam: m then v
    np.testing.assert_array_equal(proto_array(state.history[len(shapes)]), solver.history[len(shapes)])
    model = read_binary_proto(state.learned_net, caffe_pb2.NetParameter())
    ip1 = next(layer for layer in model.layer if layer.name == "ip1")
    np.testing.assert_array_equal(proto_array(ip1.blobs[0]), solver.net.params["ip1"][0].data)
    assert "Snapshotting solver state to binary proto file out/run_iter_6.solverstate" \
        in log.getvalue()


def test_learned_net_is_found_next_to_a_moved_state(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **RESUME_FIELDS))
    solver.step(3)
    state_file = solver.snapshot()
    moved = tmp_path / "moved"
    moved.mkdir()
    for suffix in (".caffemodel", ".solverstate"):
        shutil.move(str(tmp_path / f"snap_iter_3{suffix}"), moved)
    other, _ = quiet_solver(write_solver(tmp_path, name="again.prototxt", **RESUME_FIELDS))
    other.restore(str(moved / "snap_iter_3.solverstate"))
    assert other.iter == 3 and state_file.endswith("snap_iter_3.solverstate")
    for a, b in zip(weights_of(solver.net), weights_of(other.net)):
        np.testing.assert_array_equal(a, b)


def test_state_of_another_net_is_refused_with_names_and_shapes(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **RESUME_FIELDS))
    state_file = solver.snapshot()
    (tmp_path / "b").mkdir()
    wider = CONSTANT_NET.replace("num_output: 6", "num_output: 7")
    other, _ = quiet_solver(write_solver(tmp_path / "b", wider, **RESUME_FIELDS))
    with pytest.raises(ModelFileError) as info:
        other.restore(state_file)
    message = str(info.value)
    assert state_file in message and "ip1[0] (7, 5)" in message and "(6, 5)" in message


def test_state_of_another_solver_type_is_refused(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **RESUME_FIELDS))
    state_file = solver.snapshot()
    adam, _ = quiet_solver(write_solver(tmp_path, name="adam.prototxt",
                                        **dict(RESUME_FIELDS, type='"Adam"')))
    with pytest.raises(ModelFileError, match="holds 4 history blobs.*needs 8 .2 per"):
        adam.restore(state_file)


def test_hdf5_snapshots_resume_bit_exact_in_caffes_layout(tmp_path):
    fields = dict(RESUME_FIELDS, type='"Adam"', max_iter=6, snapshot=3,
                  snapshot_format="HDF5")
    straight, log = quiet_solver(write_solver(tmp_path, **fields))
    straight.solve()
    state_file = tmp_path / "snap_iter_3.solverstate.h5"
    model_file = tmp_path / "snap_iter_3.caffemodel.h5"
    assert f"Snapshotting to HDF5 file {model_file}" in log.getvalue()
    assert f"Snapshotting solver state to HDF5 file {state_file}" in log.getvalue()
    with h5py.File(state_file, "r") as state:
        assert state["iter"][()].tolist() == [3] and state["current_step"][()].tolist() == [1]
        assert state["learned_net"][()].rstrip(b"\0").decode() == str(model_file)
        assert sorted(state["history"], key=int) == [str(i) for i in range(8)]  # Adam: m, v
    with h5py.File(model_file, "r") as model:
        assert sorted(model["data"]) == ["data", "drop", "ip1", "ip2", "loss"]  # TRAIN layers
        assert model["data/ip1/0"].dtype == np.float32 and model["data/ip1/0"].shape == (6, 5)
    resumed, _ = quiet_solver(write_solver(tmp_path, name="again.prototxt", **fields))
    resumed.solve(str(state_file))
    for a, b in zip(weights_of(straight.net), weights_of(resumed.net)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(a, b)


def test_solverstate_h5_written_by_h5py_in_caffes_layout_restores(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **RESUME_FIELDS))
    shapes = [blob.shape for blob in solver.net.learnable_params]
    history = [np.full(shape, i + 0.5, np.float32) for i, shape in enumerate(shapes)]
    state_file = tmp_path / "caffe.solverstate.h5"
    with h5py.File(state_file, "w") as handle:      # as SGDSolver::SnapshotSolverStateToHDF5
        handle["iter"] = np.array([7], np.int32)
        handle["current_step"] = np.array([1], np.int32)
        for i, values in enumerate(history):
            handle[f"history/{i}"] = values
    solver.restore(str(state_file))
    assert solver.iter == 7 and solver.current_step == 1
    for expected, restored in zip(history, solver.history):
        np.testing.assert_array_equal(restored, expected)


def test_hdf5_snapshots_without_h5py_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(CaffeError, match=r"solver.prototxt:\d+: snapshot_format HDF5 needs "
                                         r"h5py.*pip install -e '\.\[hdf5\]'"):
        quiet_solver(write_solver(tmp_path, snapshot_format="HDF5"))
    solver, _ = quiet_solver(write_solver(tmp_path))
    with pytest.raises(CaffeError, match=r"pip install -e '\.\[hdf5\]'"):
        solver.restore(str(tmp_path / "x.solverstate.h5"))


def test_restore_calls_data_layer_hooks(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **RESUME_FIELDS))
    solver.step(2)
    state_file = solver.snapshot()
    seen = []
    solver.net.layers[0].restore_iteration = lambda iteration, iter_size: seen.append(iteration)
    solver.restore(state_file)
    assert seen == [2]


def test_caffe_solver_state_reads_at_message_level(fixtures_dir):
    state = read_binary_proto(fixtures_dir / "small_adam_iter_10.solverstate",
                              caffe_pb2.SolverState())
    model = read_binary_proto(fixtures_dir / "small_adam_iter_10.caffemodel",
                              caffe_pb2.NetParameter())
    assert state.iter == 10 and state.current_step == 0
    assert state.learned_net == "small_adam_iter_10.caffemodel"
    learnable = [proto_shape(b) for layer in model.layer for b in layer.blobs]
    assert [proto_shape(h) for h in state.history] == learnable * 2   # Adam: m then v
    second_moments = [proto_array(h) for h in state.history[len(learnable):]]
    assert all((v >= 0).all() for v in second_moments)


def test_caffe_solver_state_resumes(fixtures_dir, tmp_path, monkeypatch):
    for name in ("small_train.prototxt", "resized_lmdb", "small_adam_iter_10.caffemodel",
                 "small_adam_iter_10.solverstate"):
        (tmp_path / name).symlink_to(fixtures_dir / name)
    monkeypatch.chdir(tmp_path)
    text = (fixtures_dir / "small_solver.prototxt").read_text()
    (tmp_path / "solver.prototxt").write_text(text.replace('"small_adam"', '"ours/small"'))
    solver, _ = quiet_solver(tmp_path / "solver.prototxt")
    solver.restore("small_adam_iter_10.solverstate")
    state = read_binary_proto("small_adam_iter_10.solverstate", caffe_pb2.SolverState())
    assert solver.iter == 10
    for history, proto in zip(solver.history, state.history):
        np.testing.assert_array_equal(history, proto_array(proto))
    # Snapshotting the restored solver at once writes Caffe's two files byte for byte.
    for suffix in (".caffemodel", ".solverstate"):
        (tmp_path / f"small_adam_iter_10{suffix}").unlink()      # the links, not the fixtures
    (tmp_path / "solver.prototxt").write_text(text)
    again, _ = quiet_solver(tmp_path / "solver.prototxt")
    again.restore(str(fixtures_dir / "small_adam_iter_10.solverstate"))
    assert again.snapshot() == "small_adam_iter_10.solverstate"
    for suffix in (".caffemodel", ".solverstate"):
        assert (tmp_path / f"small_adam_iter_10{suffix}").read_bytes() == \
            (fixtures_dir / f"small_adam_iter_10{suffix}").read_bytes()
    solver.step(2)
    assert all(np.isfinite(w).all() for w in weights_of(solver.net))
