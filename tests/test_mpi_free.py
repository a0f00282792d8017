"""Single-process code never imports mpi4py: only pycaffe_mct.parallel may."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The library first, then the parts a single-process user imports.
MODULES = ["pycaffe_mct", "pycaffe_mct.layers", "pycaffe_mct.solvers", "pycaffe_mct.mct",
           "pycaffe_mct.cli"]

PROBE = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    found[name] = "mpi4py" in sys.modules
print(json.dumps(found))
"""


def imports_pulling_mpi4py(modules):
    """Import ``modules`` in order in a fresh interpreter; map each to 'mpi4py loaded yet?'."""
    result = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_library_and_its_single_process_parts_leaves_mpi4py_unimported():
    # One interpreter for all (each start pays for numba's import); the library comes first,
    # so the answer says which import first pulled mpi4py in.
    assert imports_pulling_mpi4py(MODULES) == {name: False for name in MODULES}


def test_the_probe_notices_mpi4py():
    pytest.importorskip("mpi4py")
    assert imports_pulling_mpi4py(["mpi4py"]) == {"mpi4py": True}
