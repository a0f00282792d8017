"""Training logs in Caffe's glog format.

Every line starts like glog's classic prefix,
``I1128 02:47:35.248430 12345 solver.cpp:239] Iteration 100, lr = 0.01``
(severity, month and day, time with microseconds, thread id, source tag),
because tools written for Caffe logs (``tools/extra/parse_log.py``, our
``parse_log`` and ``plot_training_log``) read the date from that prefix and the
numbers from the message.  The source tags name Caffe's own files and lines so
logs from both programs grep alike.

A ``GlogWriter`` owns a stream and an optional message prefix: the MCT trainer
gives each of its two models a writer with its own prefix, and a data-parallel
run silences all ranks but the root.
"""
import datetime
import os
import sys
import threading

import numpy as np

from ..errors import OutputError
from ..proto_io import make_directory


def format_number(value):
    """A number as C++'s ``ostream << float`` prints it (6 significant digits, %g)."""
    return "%g" % float(np.float32(value))


def loss_note(weight, value):
    """Caffe's `` (* w = l loss)`` after an output that carries a loss weight."""
    if not weight:
        return ""
    return f" (* {format_number(weight)} = {format_number(np.float32(weight) * value)} loss)"


def glog_prefix(severity, where, when=None, thread_id=None):
    """glog's classic prefix: ``I1128 02:47:35.248430 12345 solver.cpp:239] ``."""
    when = when or datetime.datetime.now()
    thread_id = thread_id if thread_id is not None else threading.get_native_id()
    return (f"{severity}{when:%m%d %H:%M:%S}.{when.microsecond:06d} "
            f"{thread_id} {where}] ")


class GlogWriter:
    """Writes glog-formatted lines to a stream (stderr by default) and an optional file."""

    def __init__(self, stream=None, prefix="", enabled=True, path=None):
        self.stream = stream
        self.prefix = prefix
        self.enabled = enabled
        self.path = path

    def _write(self, severity, message, where):
        if not self.enabled:
            return
        line = glog_prefix(severity, where) + self.prefix + message + "\n"
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line)
        stream.flush()
        if self.path:
            self._append(line)

    def _append(self, line):
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as exc:
            path, self.path = self.path, None      # the error itself must not be logged there
            raise OutputError(f"{path}: cannot append to the log: {exc.strerror}; the lines "
                              f"written before are kept") from None

    def info(self, message, where="solver.cpp:0"):
        self._write("I", message, where)

    def warning(self, message, where="solver.cpp:0"):
        self._write("W", message, where)

    def error(self, message, where="solver.cpp:0"):
        self._write("E", message, where)


_default = {"writer": GlogWriter()}


def default_writer():
    """The writer solvers use unless given another one."""
    return _default["writer"]


def set_default_writer(writer):
    """Route every later solver's log to ``writer``; returns the previous one."""
    previous, _default["writer"] = _default["writer"], writer
    return previous


def log_to_file(path):
    """Make the default writer also append to ``path`` (like glog's --log_dir)."""
    make_directory(os.path.dirname(os.path.abspath(path)))
    _default["writer"].path = path
