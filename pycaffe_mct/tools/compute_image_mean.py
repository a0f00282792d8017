"""compute_image_mean DB [mean.binaryproto]: the per-pixel mean of an LMDB's Datums.

Sums in float32, one record after another, and divides by the count, as
Caffe's tool does (its sum lives in a float BlobProto), so the file written is
byte-identical to Caffe's; logs the per-channel means in Caffe's words.
"""
import argparse
import sys

import numpy as np

from ..cli import run_command
from ..data.datum import datum_pixels, parse_datum
from ..data.lmdb_io import LMDBReader
from ..errors import CaffeError
from ..proto import caffe_pb2
from ..proto_io import write_binary_proto
from ._flags import ProgressBar, gflags_argv


def _log(message):
    from ..solvers.log import default_writer
    default_writer().info(message, stacklevel=2)


def compute_mean(db_path):
    """(mean (C, H, W) float32, record count) of the Datums in ``db_path``."""
    reader = LMDBReader(db_path)
    total = None
    bar = ProgressBar(len(reader), what="records")
    try:
        for count, (key, value) in enumerate(reader.items(), 1):
            where = f"{db_path}, key {key.decode('utf-8', 'replace')}"
            datum = parse_datum(value, where)
            if count == 1 and datum.encoded:
                _log("Decoding Datum")
            pixels = datum_pixels(datum, where).astype(np.float32)
            if total is None:
                total = np.zeros_like(pixels)
            elif pixels.shape != total.shape:
                raise CaffeError(f"{where}: shape {pixels.shape} differs from the first "
                                 f"record's {total.shape}")
            total += pixels
            bar.update(count)
    finally:
        reader.close()
    bar.finish(count)
    _log(f"Processed {count} files.")
    return total / np.float32(count), count


def mean_blobproto(mean):
    """A BlobProto with Caffe's legacy num/channels/height/width fields, as the tool writes."""
    channels, height, width = mean.shape
    blob = caffe_pb2.BlobProto(num=1, channels=channels, height=height, width=width)
    blob.data.extend(mean.ravel().tolist())
    return blob


def channel_means(mean):
    """Each channel's mean, summed in float32 pixel after pixel as Caffe logs it."""
    flat = mean.reshape(mean.shape[0], -1)
    return [np.cumsum(row, dtype=np.float32)[-1] / np.float32(flat.shape[1]) for row in flat]


def run(argv):
    parser = argparse.ArgumentParser(
        prog="compute_image_mean",
        description="Compute the mean image of an LMDB of Datums and log its channel means.")
    parser.add_argument("input_db", metavar="INPUT_DB", help="the LMDB folder to read")
    parser.add_argument("output_file", metavar="OUTPUT_FILE", nargs="?",
                        help="where to write the mean as a .binaryproto (optional)")
    parser.add_argument("--backend", default="lmdb",
                        help="storage format: lmdb, the only one "
                             "(the flag is kept for Caffe's scripts)")
    args = parser.parse_args(gflags_argv(argv, ()))
    if args.backend.lower() != "lmdb":
        raise CaffeError(f"backend '{args.backend}' is not supported; use --backend lmdb")
    _log("Starting iteration")
    mean, _ = compute_mean(args.input_db)
    if args.output_file:
        _log(f"Write to {args.output_file}")
        write_binary_proto(args.output_file, mean_blobproto(mean))
    _log(f"Number of channels: {mean.shape[0]}")
    from ..solvers.log import format_number
    for c, value in enumerate(channel_means(mean)):
        _log(f"mean_value channel [{c}]: {format_number(value)}")


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
