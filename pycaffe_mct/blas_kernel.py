"""The OpenBLAS kernels numpy's BLAS runs on this CPU, chosen before numpy loads it.

OpenBLAS picks its kernels by CPU model when its library loads.  On AMD Zen 4
it takes the AVX-512 (SkylakeX) ones, but Zen 4 runs a 512-bit FMA as two
256-bit halves, and OpenBLAS's AVX2 (Haswell) kernels ran the convolutions'
GEMMs faster there (one core, GFLOP/s, SkylakeX against Haswell: 32x800x256
CIFAR10-quick's conv2 87 / 96, 800x32x256 its input gradient 91 / 98,
32x75x1024 its conv1 59 / 72-89, 1024^3 100 / 107).  So on Zen 4, unless the
user set ``OPENBLAS_CORETYPE``, importing pycaffe_mct sets it to Haswell -
if numpy is not imported yet: a process that imported numpy first keeps
OpenBLAS's choice (set ``OPENBLAS_CORETYPE=Haswell`` there yourself).  The
command-line tools (``mct_train``, ``pycaffe_mct``) import pycaffe_mct first.
"""
import os
import sys

PREFERRED = "Haswell"


def is_zen4(cpuinfo):
    """Whether /proc/cpuinfo's text describes AMD Zen 4: family 25 (Zen 3 and 4) with AVX-512
    (Zen 3 has none; Zen 5, family 26, runs 512-bit FMAs whole)."""
    first = cpuinfo.split("\n\n")[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
            and "avx512f" in fields.get("flags", "").split())


def choose():
    """Set OPENBLAS_CORETYPE for this CPU when the user has not and numpy has not loaded."""
    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    except OSError:
        return
    if is_zen4(cpuinfo):
        os.environ["OPENBLAS_CORETYPE"] = PREFERRED
