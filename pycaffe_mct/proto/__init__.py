"""Caffe's protobuf schema as Python classes (``caffe_pb2``).

``caffe_pb2`` is generated from ``protos/caffe.proto`` by ``protos/compile.py``
and committed, so users never run protoc.  Importing it here turns protobuf's
gencode/runtime version error into an ImportError that names the installed
protobuf and the range this package needs.
"""

# Must agree with setup.py's install_requires and protos/compile.py.
PROTOBUF_REQUIREMENT = "protobuf>=7.35.1,<8"


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


try:
    from . import caffe_pb2
except ImportError as exc:
    # No protobuf at all, or one older than 5.26 (no runtime_version module)
    # or too old for the gencode's builder API.
    if (exc.name or "").startswith("google"):
        raise _incompatible(str(exc)) from exc
    raise
except Exception as exc:
    # protobuf >= 5.26 rejects gencode newer than itself with VersionError.
    if type(exc).__name__ == "VersionError":
        raise _incompatible(str(exc)) from exc
    raise

__all__ = ["caffe_pb2", "PROTOBUF_REQUIREMENT"]
