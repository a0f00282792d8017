"""Logs in Caffe's glog format, through Python's ``logging``.

Every line starts like glog's classic prefix,
``I1128 02:47:35.248430 12345 solver.cpp:239] Iteration 100, lr = 0.01``
(severity, month and day, time with microseconds, thread id, source tag),
because tools written for Caffe logs (``tools/extra/parse_log.py``, our
``parse_log`` and ``plot_training_log``) read the date from that prefix and the
numbers from the message.  ``GlogFormatter`` writes that prefix; a
``GlogWriter`` is a ``logging.Logger`` of its own (not in logging's global
registry) with a handler for its stream (stderr by default) and one per log
file.  A message's source tag is the ``where`` its caller names (the solver's
lines name Caffe's own file and line, so logs from both programs grep alike),
else the caller's own ``file:line`` (logging's ``stacklevel``).

The MCT trainer gives each of its two models a writer with its own prefix, and
a data-parallel run silences all ranks but the root.  A command runs inside
``command_log()``: it gets a default writer of its own, so a ``--log`` file it
opens is closed when it returns and no later command in the process writes to
it.
"""
import datetime
import functools
import logging
import os
import sys
import threading
from contextlib import contextmanager

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


class GlogFormatter(logging.Formatter):
    """glog's line: prefix, the writer's message prefix, the message."""

    def format(self, record):
        where = getattr(record, "where", None) or f"{record.filename}:{record.lineno}"
        when = datetime.datetime.fromtimestamp(record.created)
        return (glog_prefix(record.levelname[0], where, when, record.native_thread_id)
                + getattr(record, "message_prefix", "") + record.getMessage())


class _LogFile(logging.FileHandler):
    """A log file whose failed write (a full disk) is one OutputError naming it, instead
    of logging's printed traceback; the file then leaves its logger, so the error's own
    report does not try it again."""

    def __init__(self, path, logger):
        super().__init__(path, encoding="utf-8", delay=True)
        self.owner = logger

    def handleError(self, record):
        reason = sys.exc_info()[1]
        self.owner.removeHandler(self)
        try:
            self.close()
        except OSError:
            pass                       # the same failure again, when flushing
        raise OutputError(f"{self.baseFilename}: cannot append to the log: "
                          f"{getattr(reason, 'strerror', None) or reason}; the lines "
                          f"written before are kept") from None


class _StderrHandler(logging.StreamHandler):
    """A handler for whatever ``sys.stderr`` is when a line is written (pytest swaps it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class GlogWriter:
    """Writes glog-formatted lines to a stream (stderr by default) and optional files.

    ``info``/``warning``/``error(message, where=None)``: ``where`` is the
    source tag (``"solver.cpp:239"``); left out, or with line 0, the line names
    the caller's file and line (``stacklevel`` counts further frames up, for
    helpers that log on their caller's behalf).
    """

    def __init__(self, stream=None, prefix="", enabled=True, path=None):
        self.stream = stream
        self.prefix = prefix
        self.enabled = enabled
        self.logger = logging.Logger("pycaffe_mct.glog")
        handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
        self._add(handler)
        if path:
            self.add_file(path)

    def _add(self, handler):
        handler.setFormatter(GlogFormatter())
        self.logger.addHandler(handler)
        return handler

    def add_file(self, path):
        """Also append every line to ``path`` (glog's --log_dir); returns the handler."""
        make_directory(os.path.dirname(os.path.abspath(path)))
        return self._add(_LogFile(path, self.logger))

    def close(self):
        """Close the writer's log files (its stream stays open: it is the caller's)."""
        for handler in list(self.logger.handlers):
            if isinstance(handler, logging.FileHandler):
                self.logger.removeHandler(handler)
                handler.close()

    def log(self, severity, message, where=None, stacklevel=1):
        """One line at ``severity`` ("info", "warning", "error")."""
        if not self.enabled:
            return
        tag = None if where is None or where.endswith(":0") else where
        self.logger.log(_LEVELS[severity], "%s", message, stacklevel=stacklevel + 1,
                        extra={"where": tag, "message_prefix": self.prefix,
                               "native_thread_id": threading.get_native_id()})

    def info(self, message, where=None, stacklevel=1):
        self.log("info", message, where, stacklevel + 1)

    def warning(self, message, where=None, stacklevel=1):
        self.log("warning", message, where, stacklevel + 1)

    def error(self, message, where=None, stacklevel=1):
        self.log("error", message, where, stacklevel + 1)


_default = {"writer": GlogWriter()}


def default_writer():
    """The writer solvers and commands use unless given another one."""
    return _default["writer"]


def set_default_writer(writer):
    """Route every later solver's log to ``writer``; returns the previous one."""
    previous, _default["writer"] = _default["writer"], writer
    return previous


def log_to_file(path):
    """Make the default writer also append to ``path`` (like glog's --log_dir).

    Inside ``command_log`` (every command) the file is closed when the command ends.
    """
    return default_writer().add_file(path)


@contextmanager
def command_log():
    """A default writer of the block's own (same stream, prefix and switch as the
    current one); its log files are closed and the previous writer restored at the end."""
    outer = default_writer()
    writer = GlogWriter(outer.stream, outer.prefix, outer.enabled)
    set_default_writer(writer)
    try:
        yield writer
    finally:
        writer.close()
        set_default_writer(outer)


def logged_command(main):
    """Decorate a command's main function to run it inside ``command_log()``."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        with command_log():
            return main(*args, **kwargs)
    return run
