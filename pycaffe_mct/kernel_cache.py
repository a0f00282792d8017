"""Saying ``compiling kernels (first run only)`` when numba compiles instead of loading.

The core group's kernels are compiled by numba on their first call and kept in
numba's on-disk cache, so only a first run (or one after an upgrade) pays for
compilation: tens of seconds in which training prints nothing.  numba reports
every compilation it starts as a ``numba:compile`` event and none when it
loads a kernel from the cache, so listening for the first such event tells a
cold cache from a warm one at no cost: the message is logged once, as the
first compilation starts, and never on a warm start.
"""
from numba.core import event

MESSAGE = "compiling kernels (first run only)"


class _CompilationNotice(event.Listener):
    """Logs MESSAGE through ``log`` when the first compilation starts."""

    def __init__(self):
        self.log = None
        self.said = False

    def on_start(self, ev):
        if self.log is not None and not self.said:
            self.said = True
            self.log.info(MESSAGE, "kernel_cache.py:0")

    def on_end(self, ev):
        pass


_NOTICE = _CompilationNotice()


def announce_compilation(log):
    """Log MESSAGE through ``log`` (a GlogWriter) the first time numba compiles a kernel."""
    if _NOTICE.log is None:
        event.register("numba:compile", _NOTICE)
    _NOTICE.log = log
