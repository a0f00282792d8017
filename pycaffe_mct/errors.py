"""Errors a user can act on.

Every problem with user input (a prototxt, a weights file, a database, a layer
parameter) is raised as a ``CaffeError`` whose message names the file, line,
layer or record involved, so that nobody has to read a numpy traceback to find
out what went wrong.  Subclasses only exist where callers may want to catch one
kind of problem separately.
"""


class CaffeError(ValueError):
    """A problem with user input, described in terms the user wrote."""


class PrototxtError(CaffeError):
    """A text-format protobuf file could not be parsed."""


class NetError(CaffeError):
    """A net definition is inconsistent (unknown type, missing bottom, bad shapes)."""


class ModelFileError(CaffeError):
    """A binary model, solver state or blob file is unreadable or does not fit."""


class OutputError(CaffeError):
    """A file could not be written (full disk, no permission); the message names it."""


def layer_error(layer_param, message):
    """A NetError prefixed with the layer's name and type, Caffe-style."""
    return NetError(f"layer '{layer_param.name}' (type {layer_param.type}): {message}")
