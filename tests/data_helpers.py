"""Helpers for data tests: Caffe's golden LMDBs as arrays, small LMDBs with known records."""
import lmdb
import numpy as np

from pycaffe_mct.data import LMDBWriter, image_to_datum, key_for
from pycaffe_mct.proto import caffe_pb2


def golden_records(db_path):
    """[(key, Datum)] of an LMDB, read with the lmdb package alone."""
    env = lmdb.open(str(db_path), readonly=True, lock=False)
    with env.begin() as txn:
        records = [(bytes(k), caffe_pb2.Datum.FromString(v)) for k, v in txn.cursor()]
    env.close()
    return records


def raw_pixels(datum):
    """(H, W, C) uint8 of a raw Datum, decoded by hand (CHW BGR bytes)."""
    chw = np.frombuffer(datum.data, dtype=np.uint8).reshape(datum.channels, datum.height,
                                                             datum.width)
    return chw.transpose(1, 2, 0)


def list_entries(fixtures_dir):
    lines = (fixtures_dir / "images" / "list.txt").read_text().splitlines()
    return [(path, int(label)) for path, label in (line.rsplit(" ", 1) for line in lines)]


def write_indexed_lmdb(path, count, shape=(1, 2, 3), shapes=None):
    """An LMDB of ``count`` Datums whose label is their index and whose pixels are index % 256."""
    with LMDBWriter(path) as writer:
        for i in range(count):
            c, h, w = shapes[i] if shapes else shape
            image = np.full((h, w, c), i % 256, dtype=np.uint8)
            writer.put(key_for(i, f"img{i}.png"), image_to_datum(image, i).SerializeToString())
    return path
