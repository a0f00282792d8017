"""convert_imageset: turn a folder of images and a "path label" list into an LMDB of Datums.

Same arguments, flags, keys (``%08d_<path as listed>``) and Datum bytes as
Caffe's tool.  Images are decoded (and resized, OpenCV's INTER_LINEAR) by a
pool of threads, one per core, while the main thread writes batches of 1000
records.  Missing, unreadable and corrupt images are skipped with a
warning and counted in the summary; a label that is not an integer stops the
conversion before anything is written, naming the list file and line.
"""
import argparse
import collections
import concurrent.futures
import os
import sys

import numpy as np

from ..cli import run_command
from ..errors import CaffeError
from ..data.datum import encoded_datum, image_to_datum, key_for
from ..data.image import ImageDecodeError, encode_image
from ..data.lmdb_io import LMDBWriter
from ..data.sources import load_image_file, read_list_file
from ._flags import ProgressBar, add_bool, gflags_argv

USAGE = ("Convert a set of images to an LMDB of Caffe Datums, the input of the Data layer.\n"
         "LISTFILE holds one 'relative/path.jpg label' line per image under ROOTFOLDER/.")
BOOL_FLAGS = ("gray", "shuffle", "check_size", "encoded")
COMMIT_EVERY = 1000


def build_parser():
    parser = argparse.ArgumentParser(prog="convert_imageset", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root_folder", metavar="ROOTFOLDER/",
                        help="folder the list's image paths are relative to")
    parser.add_argument("list_file", metavar="LISTFILE", help="'path label' lines")
    parser.add_argument("db_name", metavar="DB_NAME", help="the LMDB folder to write")
    add_bool(parser, "gray", "When this option is on, treat images as grayscale ones")
    add_bool(parser, "shuffle", "Randomly shuffle the order of images and their labels "
                                "(a fixed seed, so a rerun gives the same order)")
    parser.add_argument("--backend", default="lmdb", help="storage format: lmdb, the only one "
                                                         "(the flag is kept for Caffe's scripts)")
    parser.add_argument("--resize_width", type=int, default=0,
                        help="Width images are resized to")
    parser.add_argument("--resize_height", type=int, default=0,
                        help="Height images are resized to")
    add_bool(parser, "check_size", "When this option is on, check that all the datum have "
                                   "the same size")
    add_bool(parser, "encoded", "When this option is on, the encoded image will be save in "
                                "datum")
    parser.add_argument("--encode_type", default="",
                        help="Optional: What type should we encode the image as ('png','jpg',...).")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="threads decoding and resizing (default: one per core)")
    return parser


def _encoding_for(path, encoded, encode_type):
    """The encoding to store, '' for raw pixels (Caffe guesses it from the extension)."""
    if not encoded:
        return ""
    return (encode_type or os.path.splitext(path)[1][1:]).lower()


def _extension_matches(path, encoding):
    extension = os.path.splitext(path)[1][1:].lower()
    return extension == encoding or (encoding == "jpg" and extension == "jpeg")


def make_record(task):
    """(key, serialized Datum or None, warning) for one list entry; runs in a worker thread."""
    line_id, (name, label, _), options = task
    root, color, height, width, encoding = options
    path = root + name
    try:
        image = load_image_file(path, color, height, width)
        if not encoding:
            datum = image_to_datum(image, label)
        elif not height and not width and _extension_matches(path, encoding):
            with open(path, "rb") as handle:                 # Caffe stores the file itself
                datum = encoded_datum(handle.read(), label)
        else:
            datum = encoded_datum(encode_image(image, encoding), label)
    except FileNotFoundError:
        return None, None, f"Could not open or find file {path}"
    except (OSError, ImageDecodeError) as exc:
        return None, None, f"Could not read image {path}: {exc}"
    return key_for(line_id, name), datum.SerializeToString(), None


def _records(tasks, jobs):
    """make_record over ``tasks`` in order, in ``jobs`` threads when more than one.

    Threads, not processes: Pillow's decoders and the resize kernel release the
    GIL, and a thread hands its record over without pickling it through a pipe.
    At most ``4 * jobs`` records are in flight, so memory stays bounded.
    """
    if jobs <= 1:
        yield from map(make_record, tasks)
        return
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.submit(make_record, task))
            if len(pending) >= 4 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_size(datum_bytes, expected, entry, list_file):
    from ..proto import caffe_pb2
    datum = caffe_pb2.Datum.FromString(datum_bytes)
    size = len(datum.data) or len(datum.float_data)
    if expected is not None and size != expected:
        raise CaffeError(f"{list_file}:{entry[2]}: image '{entry[0]}' has data size {size}, "
                         f"the first image had {expected} (--check_size)")
    return size


def _glog(message, severity="info"):
    from ..solvers.log import default_writer
    getattr(default_writer(), severity)(message, stacklevel=2)


def convert(root_folder, list_file, db_name, gray=False, shuffle=False, resize_height=0,
            resize_width=0, check_size=False, encoded=False, encode_type="", jobs=None,
            log=None):
    """Convert; returns (written, skipped, seconds).  ``log(message, severity)`` gets the log lines."""
    log = log or _glog
    entries = read_list_file(list_file)
    if shuffle:
        log("Shuffling data")
        entries = [entries[i] for i in np.random.default_rng(0).permutation(len(entries))]
    log(f"A total of {len(entries)} images.")
    if encode_type and not encoded:
        log("encode_type specified, assuming encoded=true.")
        encoded = True
    height, width = max(0, resize_height), max(0, resize_width)
    tasks = [(i, entry, (root_folder, not gray, height, width,
                         _encoding_for(entry[0], encoded, encode_type)))
             for i, entry in enumerate(entries)]
    written = skipped = 0
    data_size = None
    bar = ProgressBar(len(tasks))
    with LMDBWriter(db_name, batch=COMMIT_EVERY) as writer:
        for done, (task, (key, value, warning)) in enumerate(
                zip(tasks, _records(tasks, jobs or os.cpu_count() or 1)), 1):
            if warning:
                sys.stderr.write("\n")
                log(f"{warning} (skipped)", "warning")
                skipped += 1
            else:
                if check_size:
                    data_size = _check_size(value, data_size, task[1], list_file)
                writer.put(key, value)
                written += 1
                if written % COMMIT_EVERY == 0:
                    log(f"Processed {written} files.")
            bar.update(done)
        seconds = bar.finish(len(tasks))
    if written % COMMIT_EVERY:
        log(f"Processed {written} files.")
    return written, skipped, seconds


def run(argv):
    args = build_parser().parse_args(gflags_argv(argv, BOOL_FLAGS))
    if args.backend.lower() != "lmdb":
        raise CaffeError(f"backend '{args.backend}' is not supported; use --backend lmdb")
    written, skipped, seconds = convert(
        args.root_folder, args.list_file, args.db_name, args.gray, args.shuffle,
        args.resize_height, args.resize_width, args.check_size, args.encoded,
        args.encode_type, args.jobs)
    print(f"convert_imageset: wrote {written} images to {args.db_name} in {seconds:.1f} s "
          f"({written / max(seconds, 1e-9):.0f} images/s); skipped {skipped} "
          f"(missing, unreadable or corrupt)")


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)

if __name__ == "__main__":
    sys.exit(main())
