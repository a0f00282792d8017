"""Errors a user can act on.

Every problem with user input (a prototxt, a weights file, a database, a layer
parameter) is raised as a ``CaffeError`` whose message names the file, line,
layer or record involved, so that nobody has to read a numpy traceback to find
out what went wrong.  Subclasses only exist where callers may want to catch one
kind of problem separately.

A message quotes what the user wrote, which may be a name or a value of
hundreds of kilobytes: every word longer than ``QUOTE_LIMIT`` characters keeps
its beginning and its end (a long path keeps its file name) and says how much
was left out between them; ``quote`` does the same for values that contain
spaces.  So a message stays one readable line.
"""
import re

QUOTE_LIMIT = 200                # characters of a user's value quoted in a message
_LONG_WORD = re.compile(r"\S{%d,}" % (QUOTE_LIMIT + 1))


def quote(value, limit=QUOTE_LIMIT):
    """``value`` as text of about ``limit`` characters: its beginning and end, and how
    many characters were left out between them."""
    text = str(value)
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 5, limit * 2 // 5
    return f"{text[:head]} ...[{len(text) - head - tail} characters left out]... {text[-tail:]}"


class CaffeError(ValueError):
    """A problem with user input, described in terms the user wrote."""

    def __init__(self, message=""):
        super().__init__(_LONG_WORD.sub(lambda word: quote(word[0]), str(message)))


class PrototxtError(CaffeError):
    """A text-format protobuf file could not be parsed."""


class NetError(CaffeError):
    """A net definition is inconsistent (unknown type, missing bottom, bad shapes)."""


class ModelFileError(CaffeError):
    """A binary model, solver state or blob file is unreadable or does not fit."""


class OutputError(CaffeError):
    """A file could not be written (full disk, no permission); the message names it."""


def in_file(exc, source):
    """``exc``, or one like it whose message starts with ``source`` if it does not name it."""
    message = str(exc)
    return exc if source in message else type(exc)(f"{source}: {message}")


class MissingDependencyError(CaffeError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def install_command(extra):
    """How to install one of setup.py's extras: the package is installed from its clone."""
    return f"pip install -e '.[{extra}]' (in a venv, from the repository root)"


def missing_dependency(purpose, extra, exc, error_type=MissingDependencyError):
    """The error for an optional import that failed: what needed it and how to install it."""
    return error_type(f"{purpose} needs {exc.name or 'a package'}, which is not installed "
                      f"({exc}); install it with: {install_command(extra)}")


def layer_error(layer_param, message):
    """A NetError prefixed with the layer's name and type, Caffe-style."""
    return NetError(f"layer '{layer_param.name}' (type {layer_param.type}): {message}")
