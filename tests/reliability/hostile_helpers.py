"""Small valid inputs to damage, and the checks every hostile input must pass."""
import hashlib
import io
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pycaffe_mct.data.datum import image_to_datum, key_for
from pycaffe_mct.data.lmdb_io import LMDBWriter
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.proto_io import TEMP_MARK

REPO = Path(__file__).resolve().parents[2]
SECONDS_PER_CASE = 60
PEAK_BYTES = 256 << 20             # Python and numpy allocations of one case
LONGEST_LINE = 2000                # characters of one message line

INPUT_LAYER = ('layer { name: "data" type: "Input" top: "data" '
               'input_param { shape { dim: 2 dim: 3 } } }\n')
IP_LOSS = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
           'inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }\n'
           'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
           'top: "loss" }\n')


def png_declaring(width, height):
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def png_bytes(value=100, size=(4, 4)):
    buffer = io.BytesIO()
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_lmdb(path, count=6, shape=(4, 4, 1)):
    """A valid LMDB of ``count`` raw Datums labelled 0/1."""
    with LMDBWriter(str(path)) as writer:
        for i in range(count):
            image = np.full(shape, 10 * i % 256, np.uint8)
            writer.put(key_for(i, f"img{i}.png"), image_to_datum(image, i % 2).SerializeToString())
    return path


def data_net(source, layer_type="Data", extra=""):
    """A net text reading ``source`` (an LMDB, or a list file for ImageData)."""
    if layer_type == "Data":
        param = f'data_param {{ source: "{source}" batch_size: 2 backend: LMDB }}'
    else:
        param = f'image_data_param {{ source: "{source}" batch_size: 2 {extra} }}'
    return (f'name: "d"\nlayer {{ name: "d" type: "{layer_type}" top: "data" top: "label" '
            f'{param} }}\n' + IP_LOSS)


def files_under(root):
    """{path: sha256} of every file under ``root``."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in Path(root).rglob("*") if path.is_file()}


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"no answer within {SECONDS_PER_CASE} s")


def run_in_process(action, capsys):
    """(exit code or None, message, stderr, peak bytes) of ``action()``.

    A CaffeError is an answer; any other exception escapes (a traceback: the test fails).
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_CASE)
    tracemalloc.start()
    code, message = None, ""
    try:
        try:
            code = action()
        except CaffeError as exc:
            message = str(exc)
        except SystemExit as exc:
            code = exc.code
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    return code, message or err, err, peak


def run_cli(argv, env=None, timeout=SECONDS_PER_CASE):
    """A console command in its own process: (exit code, stderr)."""
    code = ("import sys; from pycaffe_mct import cli; from pycaffe_mct.tools import "
            "convert_imageset; sys.exit({'pycaffe_mct': cli.main, 'mct_train': "
            "cli.mct_train_main, 'convert_imageset': convert_imageset.main}[sys.argv[1]]"
            "(sys.argv[2:]))")
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)
    return done.returncode, done.stderr


def check_answer(code, message, err, names, before, root):
    """The checks of the corpus: refused, named, readable, and nothing damaged."""
    assert code != 0 or message, "accepted a hostile input"
    assert "Traceback" not in err, err
    for name in names:
        assert str(name) in message, (name, message)
    assert max(len(line) for line in message.splitlines() or [""]) <= LONGEST_LINE, \
        message[:300]
    after = files_under(root)
    changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"pre-existing files changed or removed: {changed}"
    leftovers = [str(p) for p in after if TEMP_MARK in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"

DUMMY_NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def write_dummy_solver(directory, name="solver.prototxt", net_text=DUMMY_NET, **fields):
    """A solver training DUMMY_NET (or ``net_text``) in ``directory``; returns its path."""
    directory = Path(directory)
    net = directory / "net.prototxt"
    net.write_text(net_text)
    settings = {"net": f'"{net}"', "base_lr": 0.1, "momentum": 0.9, "lr_policy": '"fixed"',
                "max_iter": 2, "display": 0, "snapshot": 2, "random_seed": 1,
                "snapshot_prefix": f'"{directory / "snap"}"'}
    settings.update(fields)
    path = directory / name
    path.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    return path
