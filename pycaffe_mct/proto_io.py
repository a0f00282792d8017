"""Reading and writing protobuf files the way Caffe does, with readable errors.

Text files (prototxt) go through protobuf's own text parser, whose line and
column we put in front of the file name.  Binary files (caffemodel, solverstate,
binaryproto) are parsed whole; a file that is not the expected message is
reported as such.  Every write goes to a temporary file in the same directory
that is then renamed over the target, so a crash mid-write leaves the previous
file intact.
"""
import os
import tempfile

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .errors import ModelFileError, PrototxtError


def parse_prototxt(text, message, source="<string>"):
    """Merge prototxt ``text`` into ``message``; errors name ``source`` and the line."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        where = f"{source}:{line}:{col}" if line else source
        detail = str(exc).split(" : ", 1)[-1] if line else str(exc)
        raise PrototxtError(
            f"{where}: cannot parse as {message.DESCRIPTOR.name}: {detail}") from None
    return message


def read_prototxt(path, message):
    """Parse the text-format file ``path`` into ``message`` and return it."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise PrototxtError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_prototxt(text, message, source=path)


def read_binary_proto(path, message):
    """Parse the binary protobuf file ``path`` into ``message`` and return it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        hint = "; it looks like a text file" if _looks_like_text(data) else ""
        raise ModelFileError(
            f"{path}: not a binary {message.DESCRIPTOR.name} file "
            f"({len(data)} bytes{hint}; protobuf says: {exc})") from None
    return message


def _looks_like_text(data):
    """Whether ``data`` is printable UTF-8 (a prototxt passed where a binary file belongs)."""
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\n\r\t" for ch in text)


def write_atomically(path, data):
    """Write ``data`` (bytes or str) to ``path`` through a temporary file and a rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_binary_proto(path, message):
    """Serialize ``message`` to ``path`` atomically."""
    write_atomically(path, message.SerializeToString())


def write_prototxt(path, message):
    """Write ``message`` in text format to ``path`` atomically."""
    write_atomically(path, text_format.MessageToString(message))
