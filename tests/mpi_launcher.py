"""Which ``mpiexec`` the MPI tests start, and the mark that skips them without mpi4py.

The ``mpich`` wheel installs its launcher into the interpreter's scripts folder (a venv's
``bin``), which is not on PATH unless the venv is activated; so the launcher is looked for
beside the running interpreter first.  mpi4py is an optional extra, so its absence skips the
MPI tests; mpi4py without a launcher is a broken install, and those tests fail, naming it.
"""
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

INSTALL_HINT = "in a venv, from the repository root: pip install -e '.[mpi]'"


def _launcher_folders():
    """Folders that hold this interpreter's scripts (venv bin, the prefix's bin, --user bin)."""
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sys.prefix, "bin"), Path(sysconfig.get_path("scripts", f"{os.name}_user"))]
    return [str(folder) for folder in dict.fromkeys(folders)]


def find_mpiexec():
    """``mpiexec`` beside the running interpreter, else on PATH; None when there is none."""
    return (shutil.which("mpiexec", path=os.pathsep.join(_launcher_folders()))
            or shutil.which("mpiexec"))


MPI4PY_INSTALLED = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not MPI4PY_INSTALLED,
                               reason=f"mpi4py is not installed ({INSTALL_HINT})")


def mpiexec():
    """The launcher's path; fails the test when mpi4py is installed but no launcher is."""
    launcher = find_mpiexec()
    if launcher is None:
        pytest.fail(f"mpi4py is installed but no mpiexec was found beside {sys.executable} "
                    f"or on PATH; install MPICH's launcher ({INSTALL_HINT}) or the site's MPI")
    return launcher
