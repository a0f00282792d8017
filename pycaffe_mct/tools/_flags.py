"""Caffe's tools take gflags-style flags; argparse with two small adaptations.

gflags accepts ``-flag`` as well as ``--flag``, and booleans as ``--gray``,
``--gray=true``, ``--gray=false`` or ``--nogray``; ``gflags_argv`` rewrites
such arguments into what argparse understands.
"""
import argparse
import sys
import time


def _truth(name, value):
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "f", "n"):
        return False
    raise SystemExit(f"error: --{name} expects true or false, got '{value}'")


def add_bool(parser, name, help_text):
    """A gflags boolean: ``--name`` sets it, ``--noname`` clears it."""
    parser.add_argument(f"--{name}", action="store_true", help=help_text)
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def gflags_argv(argv, bool_names):
    """Turn ``-flag`` into ``--flag`` and ``--flag=true|false`` into ``--flag`` / ``--noflag``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            arg = "-" + arg
        name, _, value = arg[2:].partition("=")
        if arg.startswith("--") and name in bool_names and value:
            arg = f"--{name}" if _truth(name, value) else f"--no{name}"
        out.append(arg)
    return out


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most five times a second.

    Only a terminal gets the redrawn line; a redirected stream (a log file, CI)
    gets a plain line each time another tenth is done, and the summary.
    """

    def __init__(self, total, what="images", stream=None):
        self.total, self.what = total, what
        self.stream = stream or sys.stderr
        self.start = self._drawn = time.monotonic()
        self.redraws = bool(getattr(self.stream, "isatty", lambda: False)())
        self._tenths = 0

    def _status(self, done, now):
        rate = done / max(now - self.start, 1e-9)
        return f"{done}/{self.total} {self.what} ({rate:.0f}/s)"

    def update(self, done, force=False):
        now = time.monotonic()
        if not self.redraws:
            tenths = 10 * done // max(self.total, 1)
            if tenths > self._tenths and done < self.total:
                self._tenths = tenths
                self.stream.write(self._status(done, now) + "\n")
                self.stream.flush()
            return
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        width = 30
        filled = width * done // max(self.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                          f"{self._status(done, now)}")
        self.stream.flush()

    def finish(self, done):
        """Draw the final state (a redirected stream: the summary line); returns seconds."""
        if self.redraws:
            self.update(done, force=True)
            self.stream.write("\n")
        else:
            self.stream.write(self._status(done, time.monotonic()) + "\n")
        self.stream.flush()
        return time.monotonic() - self.start
