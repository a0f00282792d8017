"""The solver's public state: what trainers and data parallelism coordinate through."""
import os

import numpy as np

from solver_helpers import quiet_solver, weights_of, write_solver

FIELDS = {"type": '"Adam"', "momentum": 0.9, "lr_policy": '"multistep"', "stepvalue": [2, 5],
          "gamma": 0.5, "max_iter": 8}


def test_copying_the_state_continues_exactly_where_the_other_solver_was(tmp_path):
    straight, _ = quiet_solver(write_solver(tmp_path, **FIELDS))
    straight.step(3)
    taken, _ = quiet_solver(write_solver(tmp_path, name="taken.prototxt", **FIELDS))
    taken.copy_state_from(straight)
    assert (taken.iter, taken.current_step) == (3, 1)
    assert len(taken.state_arrays()) == 3 * len(taken.net.learnable_params)   # Adam: m, v
    straight.step(5)
    taken.step(5)
    for a, b in zip(straight.state_arrays(), taken.state_arrays()):
        np.testing.assert_array_equal(a, b)


def test_state_arrays_are_the_solvers_own_arrays(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **FIELDS))
    for array in solver.state_arrays():
        array[...] = 0.25
    assert all((w == 0.25).all() for w in weights_of(solver.net))


def test_the_arbiter_decides_the_action_the_local_request_only_informs(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **FIELDS))
    solver.set_action_function(lambda: "stop")
    assert solver.local_action_request() == "stop"
    solver.set_action_arbiter(lambda: "none")          # the other replicas did not ask
    solver.step(4)
    assert solver.iter == 4
    solver.set_action_arbiter(None)
    solver.step(4)
    assert solver.iter == 5                             # the local stop acts now


def test_snapshot_if_new_writes_each_iteration_once(tmp_path):
    solver, _ = quiet_solver(write_solver(tmp_path, **FIELDS))
    solver.step(2)
    solver.snapshot_if_new()
    first = solver.snapshot_path(2)
    written = os.stat(first).st_ino          # files are replaced atomically: a new inode
    solver.snapshot_if_new()
    assert solver.last_snapshot == first and os.stat(first).st_ino == written
    solver.step(1)
    solver.snapshot_if_new()
    assert solver.last_snapshot == solver.snapshot_path(3)
