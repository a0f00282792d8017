"""Reading and writing protobuf files the way Caffe does, with readable errors.

Text files (prototxt) go through protobuf's own text parser, whose line and
column we put in front of the file name.  Binary files (caffemodel, solverstate,
binaryproto) are parsed whole; a file that is not the expected message is
reported as such.  Every write goes to a temporary file in the same directory
that is then renamed over the target, so a crash mid-write leaves the previous
file intact; a failed write names the file and the reason and removes its
temporary file.  A temporary file carries our mark and its writer's process id,
so the next start can remove the ones a killed process left behind.
"""
import os
import re
import tempfile

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .errors import CaffeError, ModelFileError, OutputError, PrototxtError, quote

TEMP_MARK = ".pycaffe_mct-tmp-"
_TEMP_NAME = re.compile(r"^(?P<target>.+)" + re.escape(TEMP_MARK) + r"(?P<pid>\d+)-\w+$")


def parse_prototxt(text, message, source="<string>"):
    """Merge prototxt ``text`` into ``message``; errors name ``source`` and the line."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        where = f"{source}:{line}:{col}" if line else source
        detail = str(exc).split(" : ", 1)[-1] if line else str(exc)
        raise PrototxtError(
            f"{where}: cannot parse as {message.DESCRIPTOR.name}: {quote(detail)}") from None
    return message


def read_prototxt(path, message):
    """Parse the text-format file ``path`` into ``message`` and return it."""
    path = os.fspath(path)
    return parse_prototxt(read_text(path, PrototxtError), message, source=path)


def read_text(path, error=CaffeError):
    """The UTF-8 text of ``path``; unreadable files and invalid bytes raise ``error``
    naming the file (and the line and column of the first byte that is not UTF-8)."""
    path = os.fspath(path)
    data = _read_bytes(path, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{path}:{line}:{column}: not UTF-8 text (byte "
                    f"0x{data[exc.start]:02x}); save the file as UTF-8") from None


def _read_bytes(path, error):
    """The bytes of ``path``; a file that cannot be read raises ``error`` naming it."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None


def read_binary_proto(path, message):
    """Parse the binary protobuf file ``path`` into ``message`` and return it."""
    path = os.fspath(path)
    data = _read_bytes(path, ModelFileError)
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
    """Write ``data`` (bytes or str) to ``path`` through a temporary file and a rename.

    A failing write (full disk, no permission, file too large) raises an
    ``OutputError`` naming ``path`` and the reason; ``path`` keeps its previous
    contents and the temporary file is removed.
    """
    path = os.fspath(path)
    try:
        _write_through_temporary(path, data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}; the previous "
                          f"file, if any, is kept") from None


def _write_through_temporary(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f"{os.path.basename(path)}{TEMP_MARK}{os.getpid()}-",
                               dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=None if mode == "wb" else "utf-8") as handle:
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


def make_directory(path):
    """``os.makedirs(path, exist_ok=True)``; a failure names the directory and the reason."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the directory: {exc.strerror}") from None


def remove_stale_temporaries(prefix):
    """Remove the temporary files of ours whose target starts with ``prefix`` and
    whose writer is no longer running (a kill mid-write); returns their paths."""
    directory = os.path.dirname(os.path.abspath(prefix))
    stem = os.path.basename(prefix)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        match = _TEMP_NAME.match(name)
        if match and match["target"].startswith(stem) and not _running(int(match["pid"])):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
            except OSError:
                pass
    return removed


def _running(pid):
    """Whether process ``pid`` exists on this machine (ours counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
