"""Solvers: Caffe's training loop, its six update rules, snapshots and logs.

``get_solver(path_or_SolverParameter)`` builds the solver that the file's
``type`` names; ``SGDSolver(path)`` and friends build one type whatever the file
says, as pycaffe's classes do.  New types register with ``@register_solver``.
"""
from .solver import NonFiniteError, Solver, get_solver, register_solver, solver_types
from .update_rules import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver,
                           RMSPropSolver, SGDSolver)

__all__ = [
    "Solver", "get_solver", "register_solver", "solver_types", "NonFiniteError",
    "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver",
]
