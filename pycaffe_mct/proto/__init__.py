"""Caffe's protobuf schema as Python classes (``caffe_pb2``).

``caffe_pb2`` is generated from ``protos/caffe.proto`` by ``tools/compile_proto.py``
and committed, so users never run protoc.  The generated module works with any
protobuf runtime from 4.21 to 7.x (see tools/compile_proto.py for why;
.ci/protobuf-matrix checks it); this package checks the installed version first, so a clash
with another framework's protobuf is reported with the versions and the fix
instead of a traceback from inside protobuf.
"""

# Must agree with setup.py (which imports it) and tools/compile_proto.py.
PROTOBUF_REQUIREMENT = "protobuf>=4.21,<8"
_OLDEST = (4, 21)
_NEWEST_MAJOR = 7


def _installed_protobuf_version():
    try:
        import google.protobuf
    except ImportError:
        return "none"
    return getattr(google.protobuf, "__version__", "unknown")


def _incompatible(detail):
    return ImportError(
        "pycaffe_mct needs %s, but protobuf %s is installed (%s). "
        "Fix it with: pip install '%s'"
        % (PROTOBUF_REQUIREMENT, _installed_protobuf_version(), detail,
           PROTOBUF_REQUIREMENT))


def _check_runtime():
    version = _installed_protobuf_version()
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return  # a development build: let the import itself decide
    if parts < _OLDEST or parts[0] > _NEWEST_MAJOR:
        raise _incompatible("outside the supported range")


def field_label(field):
    """'repeated', 'required' or 'optional' on every supported runtime: protobuf 7 has only
    ``is_repeated``/``is_required``, protobuf 4 only ``label``."""
    if hasattr(field, "is_repeated"):
        return ("repeated" if field.is_repeated else
                "required" if field.is_required else "optional")
    return {field.LABEL_REPEATED: "repeated", field.LABEL_REQUIRED: "required"}.get(
        field.label, "optional")


_check_runtime()
try:
    from . import caffe_pb2
except ImportError as exc:
    if (exc.name or "").startswith("google"):
        raise _incompatible(str(exc)) from exc
    raise

__all__ = ["caffe_pb2", "PROTOBUF_REQUIREMENT", "field_label"]
