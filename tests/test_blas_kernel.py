"""Choosing OpenBLAS's kernels before numpy loads them: Zen 4 gets the AVX2 ones, other
CPUs and a user's own choice are left alone, and a process that loaded numpy first too."""
import os
import subprocess
import sys

import pytest

from pycaffe_mct import blas_kernel

ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx2 avx512f\n"
ZEN3 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nflags\t\t: fpu avx2\n"
ZEN5 = "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: fpu avx2 avx512f\n"
SKYLAKE_X = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu avx2 avx512f\n"


@pytest.mark.parametrize("cpuinfo,expected", [
    (ZEN4, True), (ZEN4 + "\n" + ZEN4, True), (ZEN3, False), (ZEN5, False), (SKYLAKE_X, False),
    ("", False)])
def test_zen4_is_amd_family_25_with_avx512(cpuinfo, expected):
    assert blas_kernel.is_zen4(cpuinfo) is expected


def _coretype_seen(code, **env):
    """OPENBLAS_CORETYPE and the kernel OpenBLAS loaded, in a new process running code."""
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    environment.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport os, threadpoolctl\n"
         "kernels = [i.get('architecture') for i in threadpoolctl.threadpool_info()"
         " if i['internal_api'] == 'openblas']\n"
         "print(os.environ.get('OPENBLAS_CORETYPE'), kernels[0] if kernels else None)"],
        env=environment, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _this_cpu_is_zen4():
    with open("/proc/cpuinfo") as handle:
        return blas_kernel.is_zen4(handle.read())


def test_importing_pycaffe_mct_first_picks_the_kernels_for_this_cpu():
    coretype, kernel = _coretype_seen("import pycaffe_mct, numpy")
    if _this_cpu_is_zen4():
        assert (coretype, kernel) == ("Haswell", "Haswell")
    else:
        assert coretype == "None"


def test_a_users_choice_and_a_loaded_numpy_are_kept():
    assert _coretype_seen("import pycaffe_mct, numpy", OPENBLAS_CORETYPE="Sandybridge")[0] == \
        "Sandybridge"
    assert _coretype_seen("import numpy, pycaffe_mct")[0] == "None"
