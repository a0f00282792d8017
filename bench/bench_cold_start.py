"""The digits demo's start-up: seconds from launching ``mct_train`` to its first iteration.

Runs the README's demo (``make_digits_dataset data/digits``, then ``mct_train --solver
models/mct_digits/solver.prototxt``) in a temporary directory, first with an empty numba
cache (``NUMBA_CACHE_DIR`` pointing at a new directory: every kernel is compiled), then
``--warm`` times with that cache filled.  Each run is stopped at its first logged
iteration (``[M_a] Iteration 0 (...)``, after the iteration-0 test pass); the cold run
also reports when ``compiling kernels (first run only)`` appeared.  Goals (issue 20):
cold within 10 s, warm within 2 s on a 2-core machine.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_ITERATION = re.compile(r"\] \[M_a\] Iteration 0 \(")
MCT_TRAIN = "from pycaffe_mct.cli import mct_train_main; mct_train_main()"


def start_up(workdir, cache):
    """(seconds to the first iteration, seconds to the compiling message or None)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-c", MCT_TRAIN, "--solver",
                            "models/mct_digits/solver.prototxt"], cwd=workdir, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said, log = None, []
    try:
        for line in job.stdout:
            seconds = time.perf_counter() - start
            log.append(line)
            if said is None and "compiling kernels (first run only)" in line:
                said = seconds
            if FIRST_ITERATION.search(line):
                return seconds, said
    finally:
        job.kill()
        job.wait()
    raise RuntimeError("mct_train ended before its first iteration:\n" + "".join(log[-20:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=3, help="warm runs after the cold one")
    args = parser.parse_args(argv)
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        (work / "models").symlink_to(REPO / "models")
        subprocess.run([sys.executable, "-m", "pycaffe_mct.tools.make_digits_dataset",
                        str(work / "data/digits")], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
        cold, said = start_up(work, work / "numba_cache")
        warm = [start_up(work, work / "numba_cache")[0] for _ in range(args.warm)]
    print(f"cold (empty numba cache): first iteration after {cold:.1f} s, "
          f"'compiling kernels (first run only)' at {said:.1f} s" if said is not None else
          f"cold: first iteration after {cold:.1f} s, the compiling message NOT said")
    print("warm (cache filled): first iteration after "
          + ", ".join(f"{seconds:.1f} s" for seconds in warm))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
