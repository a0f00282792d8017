"""The MPI tests find the launcher the ``mpich`` wheel installs beside the interpreter."""
import sys
from pathlib import Path

from mpi_launcher import find_mpiexec, needs_mpi


@needs_mpi
def test_mpiexec_is_found_beside_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    launcher = find_mpiexec()
    assert launcher is not None, f"no mpiexec beside {sys.executable}"
    assert Path(launcher).parent.resolve() in {Path(sys.executable).parent.resolve(),
                                               Path(sys.prefix, "bin").resolve()}


def test_no_launcher_anywhere_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr("sysconfig.get_path", lambda *args: str(tmp_path))
    assert find_mpiexec() is None
