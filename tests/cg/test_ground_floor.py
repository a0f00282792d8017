"""The core-group back end is the ground floor: nothing in ``pycaffe_mct/cg`` imports
from the rest of the package (nets, layers, solvers, commands)."""
import ast
from pathlib import Path

import pycaffe_mct.cg

CG = Path(pycaffe_mct.cg.__file__).parent


def imported_modules(path):
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ".".join(("pycaffe_mct",) + path.relative_to(CG.parent).parent.parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[:len(parts) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))


def test_cg_imports_nothing_above_it():
    offending = {(str(path.relative_to(CG)), name) for path in CG.rglob("*.py")
                 for name in imported_modules(path)
                 if name.split(".")[0] == "pycaffe_mct" and not name.startswith("pycaffe_mct.cg")}
    assert offending == set()


def test_the_check_sees_relative_imports():
    names = set(imported_modules(CG / "ops" / "convolution.py"))
    assert {"pycaffe_mct.cg", "pycaffe_mct.cg.jit", "pycaffe_mct.cg.workspace"} <= names
