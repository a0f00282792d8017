"""Datum records exactly as Caffe writes and reads them.

A Datum holds one image and its label: ``data`` is uint8 pixels in CHW order
with channels in OpenCV's BGR order, ``float_data`` float pixels instead, and
``encoded`` datums keep a whole JPEG/PNG file in ``data`` (without channels,
height or width).  Caffe's ``CVMatToDatum`` sets ``encoded = false``
explicitly, so that field is on the wire too; we set it the same way so our
records are byte-identical to Caffe's.
"""
import numpy as np

from ..errors import CaffeError
from ..proto import caffe_pb2
from .image import ImageDecodeError, decode_image


def key_for(line_index, path):
    """convert_imageset's key: the line number in 8 digits, '_', the path as listed."""
    return f"{line_index:08d}_{path}".encode("utf-8")


def image_to_datum(image, label):
    """A raw Datum from an (H, W, C) uint8 BGR image (Caffe's CVMatToDatum + label)."""
    height, width, channels = image.shape
    datum = caffe_pb2.Datum(channels=channels, height=height, width=width)
    datum.encoded = False
    datum.data = np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()
    datum.label = int(label)
    return datum


def encoded_datum(file_bytes, label):
    """An encoded Datum holding ``file_bytes`` (Caffe's ReadFileToDatum)."""
    datum = caffe_pb2.Datum(data=file_bytes, label=int(label))
    datum.encoded = True
    return datum


def parse_datum(value, where):
    """Parse serialized Datum bytes; ``where`` names the source and key on failure."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as exc:                       # protobuf raises DecodeError/RuntimeError
        raise CaffeError(f"{where}: not a Datum ({len(value)} bytes): {exc}") from None
    return datum


def datum_pixels(datum, where, color=None):
    """The (C, H, W) pixels of a Datum: uint8 for ``data``, float32 for ``float_data``.

    Encoded datums are decoded (``color`` as in ``decode_image``); a record
    whose byte count does not match its channels x height x width is an error
    naming ``where``.
    """
    if datum.encoded:
        try:
            return decode_image(datum.data, color).transpose(2, 0, 1)
        except ImageDecodeError as exc:
            raise CaffeError(f"{where}: {exc}") from None
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if len(datum.data):
        if len(datum.data) != count:
            raise CaffeError(f"{where}: datum has {len(datum.data)} bytes of data for "
                             f"shape {shape} ({count} expected)")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data) != count or count == 0:
        raise CaffeError(f"{where}: datum has {len(datum.float_data)} float_data values "
                         f"for shape {shape} ({count} expected)")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)
