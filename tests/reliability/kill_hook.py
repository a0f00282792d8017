"""Run a console command in a child process that may SIGKILL itself mid-write.

``python kill_hook.py <command> args...`` runs ``pycaffe_mct``, ``mct_train``.
With ``KILL_AT_WRITE=<n>:<fsync|replace>`` in the environment the process kills
itself with SIGKILL at its n-th atomic write: before the temporary file is
synced, or after it is complete but before it is renamed over the target: the
moments a snapshot is most exposed.  ``SLOW_DISK=<seconds>`` makes every
fsync take that long at least (a slow disk): a snapshot then spans a known
time, so a kill a few milliseconds after one lands within the next ones or
their writes whatever the machine's speed.  ``KILL_HOOK_PIDS=<dir>`` makes every
process (every MPI rank) leave its process id in ``<dir>/<rank>.pid``.
"""
import os
import signal
import sys
import time

from pycaffe_mct import cli
from pycaffe_mct.proto_io import TEMP_MARK

COMMANDS = {"pycaffe_mct": cli.main, "mct_train": cli.mct_train_main}


def _die_at_write(spec):
    """Wrap os.fsync or os.replace so the n-th call on one of our writes kills us."""
    number, phase = spec.split(":")
    real, calls = getattr(os, phase), [0]

    def dying(*args, **kwargs):
        ours = phase == "fsync" or TEMP_MARK in os.fspath(args[0])
        if ours:
            calls[0] += 1
            if calls[0] == int(number):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(os, phase, dying)


def _slow_disk(seconds):
    real = os.fsync

    def slow(fd):
        time.sleep(seconds)
        return real(fd)
    os.fsync = slow


def main():
    if os.environ.get("SLOW_DISK"):
        _slow_disk(float(os.environ["SLOW_DISK"]))
    if os.environ.get("KILL_AT_WRITE"):
        _die_at_write(os.environ["KILL_AT_WRITE"])
    if os.environ.get("KILL_HOOK_PIDS"):
        rank = os.environ.get("PMI_RANK", "0")
        with open(os.path.join(os.environ["KILL_HOOK_PIDS"], f"{rank}.pid"), "w") as handle:
            handle.write(str(os.getpid()))
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
