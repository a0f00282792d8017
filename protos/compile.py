"""Regenerate pycaffe_mct/proto/caffe_pb2.py from protos/caffe.proto.

Usage (from anywhere; needs ``pip install grpcio-tools``, developers only)::

    python protos/compile.py          # rewrite caffe_pb2.py
    python protos/compile.py --check  # exit 1 if caffe_pb2.py is stale

The generated module is committed; users only need the protobuf runtime.

Runtime requirement (setup.py install_requires): "protobuf>=7.35.1,<8"

Why: the current caffe_pb2.py was made by grpcio-tools 1.85.1 (protoc 35.1),
whose Python gencode version is 7.35.1.  The generated file calls
google.protobuf.runtime_version.ValidateProtobufRuntimeVersion(PUBLIC, 7, 35,
1), which in protobuf 7.36.2 raises VersionError only when the runtime is
older than the gencode (7.34.x and every 6.x/5.x release are rejected;
releases before 5.26 have no runtime_version module and fail with an
ImportError).  It accepts any newer runtime, but protobuf only promises
gencode/runtime compatibility within one major version, hence "<8".  If a
newer grpcio-tools changes the "Protobuf Python Version" line of the output,
update PROTOBUF_REQUIREMENT in pycaffe_mct/proto/__init__.py, setup.py and
this docstring (the script warns when they disagree).
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
INIT = OUT_DIR / "__init__.py"


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
    return Path(out_dir) / "caffe_pb2.py"


def check_requirement(generated):
    """Warn if the gencode version no longer matches the documented range."""
    m = re.search(r"^# Protobuf Python Version: (\S+)$",
                  generated.read_text(), re.M)
    req = re.search(r'PROTOBUF_REQUIREMENT = "([^"]+)"', INIT.read_text())
    gen = m.group(1) if m else "?"
    if not req or ">=%s," % gen not in req.group(1):
        print("WARNING: gencode version is %s but PROTOBUF_REQUIREMENT is %s;"
              " update __init__.py, setup.py and this script's docstring."
              % (gen, req.group(1) if req else "missing"), file=sys.stderr)
    return gen


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
                print("%s is stale; run python protos/compile.py" % GENERATED)
                return 1
        print("%s is up to date" % GENERATED)
        return 0
    generate(OUT_DIR)
    gen = check_requirement(GENERATED)
    print("wrote %s (gencode %s)" % (GENERATED, gen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
