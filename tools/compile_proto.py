"""Regenerate pycaffe_mct/proto/caffe_pb2.py from protos/caffe.proto.

Usage (from anywhere; needs ``pip install grpcio-tools``, developers only)::

    python tools/compile_proto.py          # rewrite caffe_pb2.py
    python tools/compile_proto.py --check  # exit 1 if caffe_pb2.py is stale

The generated module is committed; users only need the protobuf runtime.

Runtime requirement (setup.py install_requires): "protobuf>=4.21,<8"

Why: protoc stamps its Python output with a call to
google.protobuf.runtime_version.ValidateProtobufRuntimeVersion, which rejects
every runtime older than the protoc that wrote the file (for grpcio-tools
1.85, anything before 7.35.1).  Caffe users often share an environment with
other frameworks pinned to protobuf 4, 5 or 6, and version clashes are a known
Caffe pain.  The rest of the generated module only uses the descriptor-pool
and builder API that exists since protobuf 3.20, so ``generate`` strips that
one check (``strip_runtime_check``).  The result was verified to parse and
re-serialize Caffe's golden files byte for byte under protobuf 4.21.12,
4.25.5, 5.29.3, 6.31.1 and 7.36.2; pycaffe_mct/proto/__init__.py checks the
installed version against the range instead, with a readable error.
"""

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos"
PROTO = PROTO_DIR / "caffe.proto"
OUT_DIR = ROOT / "pycaffe_mct" / "proto"
GENERATED = OUT_DIR / "caffe_pb2.py"


def generate(out_dir):
    """Run protoc (from grpcio-tools) on caffe.proto into out_dir."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("grpcio-tools is required: pip install grpcio-tools")
    # -I protos makes the descriptor's file name "caffe.proto", like Caffe's.
    rc = protoc.main(["protoc", "-I%s" % PROTO_DIR,
                      "--python_out=%s" % out_dir, str(PROTO)])
    if rc != 0:
        sys.exit("protoc failed with exit code %d" % rc)
    generated = Path(out_dir) / "caffe_pb2.py"
    generated.write_text(strip_runtime_check(generated.read_text()))
    return generated


RUNTIME_CHECK = re.compile(
    r"from google\.protobuf import runtime_version as _runtime_version\n"
    r"|_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:.*\n)*?\)\n")


def strip_runtime_check(source):
    """Drop protoc's exact-runtime check so older protobuf 4-6 runtimes load the module."""
    stripped, count = RUNTIME_CHECK.subn("", source)
    if count not in (0, 2):
        sys.exit("unexpected runtime-version block in the generated code; update tools/compile_proto.py")
    return ("# The protoc runtime-version check was removed by tools/compile_proto.py; "
            "see its docstring.\n" + stripped) if count else source


def check_requirement(generated):
    """The protoc version that wrote ``generated`` (as its header states)."""
    m = re.search(r"^# Protobuf Python Version: (\S+)$",
                  generated.read_text(), re.M)
    return m.group(1) if m else "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only verify that caffe_pb2.py is up to date")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(tmp)
            if not GENERATED.exists() or not filecmp.cmp(
                    fresh, GENERATED, shallow=False):
                print("%s is stale; run python tools/compile_proto.py" % GENERATED)
                return 1
        print("%s is up to date" % GENERATED)
        return 0
    generate(OUT_DIR)
    gen = check_requirement(GENERATED)
    print("wrote %s (gencode %s)" % (GENERATED, gen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
