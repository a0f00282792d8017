"""Batch sources: turn a batch number into a (data, labels) pair, deterministically.

A source knows its records (an LMDB of Datums, or an image list file), its
rank's ``Partition`` of them, a ``DataTransformer``, the batch size, and a
seed.  Batch ``b`` holds the records at positions ``skip + b * batch_size ...``
of the rank's stream (epoch after epoch), and its random crops and mirrors come
from a generator seeded with (seed, rank, b); so any batch can be produced at
any time, in any thread, and a resumed run sees the same batches.
"""
import os

import numpy as np

from ..errors import CaffeError, quote
from ..proto_io import read_text
from .datum import datum_pixels, parse_datum
from .image import ImageDecodeError, read_image, resize_linear


class BatchSource:
    """Base class: subclasses give ``num_records`` and ``read_records(indices)``.

    ``decodes`` says whether records are compressed images, whose decoding is
    best done in a separate process (see ``prefetch``); ``start_in_worker`` then runs
    first in that process.
    """
    decodes = False

    def __init__(self, transformer, batch_size, partition, seed, skip=0):
        self.transformer, self.batch_size = transformer, int(batch_size)
        self.partition, self.seed, self.skip = partition, int(seed), int(skip)

    def start_in_worker(self):
        """Nothing to reopen by default."""

    def record_indices(self, batch_index):
        start = self.skip + batch_index * self.batch_size
        return [self.partition.locate(p)[1] for p in range(start, start + self.batch_size)]

    def produce(self, batch_index):
        """(data float32 (N, C, H, W), labels float32 (N,)) of batch ``batch_index``."""
        generator = np.random.default_rng([self.seed, self.partition.rank, batch_index])
        records = self.read_records(self.record_indices(batch_index))
        return self.transform_records(records, generator, self.batch_size)

    def transform_records(self, records, generator, count):
        """(data, labels) of ``count`` (pixels, label, where) records, transformed."""
        labels = np.empty(count, dtype=np.float32)
        data = first_shape = None
        for item, (pixels, label, where) in enumerate(records):
            out_shape = self.transformer.output_shape(pixels.shape)
            if data is None:
                first_shape = pixels.shape
                data = np.empty((count,) + out_shape, dtype=np.float32)
            elif out_shape != data.shape[1:]:
                raise CaffeError(
                    f"{where}: image shape {pixels.shape} differs from {first_shape} of the "
                    f"batch's first record; set crop_size, or convert with "
                    f"--resize_height/--resize_width")
            self.transformer.transform(pixels, generator, data[item], where)
            labels[item] = label
        return data, labels

    def first_record_shape(self):
        """(C, H, W) of the first record this rank reads (sets the top shape, as Caffe)."""
        [(pixels, _, where)] = list(self.read_records([self.partition.locate(self.skip)[1]]))
        self.transformer.check(pixels.shape, where)
        return self.transformer.output_shape(pixels.shape)


class LMDBSource(BatchSource):
    """Datums from an ``LMDBReader``; encoded ones are decoded as the transformer says."""

    def __init__(self, reader, *args, **kwargs):
        self.reader = reader
        super().__init__(*args, **kwargs)
        with reader.transaction() as txn:
            self.decodes = parse_datum(reader.read(txn, 0), reader.where(0)).encoded

    def start_in_worker(self):
        self.reader.reopen_in_worker()

    @property
    def num_records(self):
        return len(self.reader)

    def read_records(self, indices):
        color = self.transformer.decode_color
        with self.reader.transaction() as txn:
            for index in indices:
                where = self.reader.where(index)
                datum = parse_datum(self.reader.read(txn, index), where)
                yield datum_pixels(datum, where, color), datum.label, where

    def close(self):
        self.reader.close()


def read_list_file(path):
    """[(relative path, int label, line number)] from "path label" lines, as Caffe reads them.

    The label is what follows the last space, so paths may contain spaces; a
    label that is not an integer names the file and line.
    """
    if not os.path.isfile(path):
        raise CaffeError(f"list file '{path}' does not exist")
    entries = []
    for number, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, _, label = line.rpartition(" ")
        try:
            entries.append((name, int(label), number))
        except ValueError:
            raise CaffeError(f"{path}:{number}: label '{quote(label)}' is not an integer "
                             f"(expected 'path label')") from None
        if not name:
            raise CaffeError(f"{path}:{number}: expected 'path label', got '{quote(line)}'")
    return entries


def load_image_file(path, color, height=0, width=0):
    """An image file as OpenCV's ReadImageToCVMat gives it: (H, W, C) BGR, maybe resized."""
    image = read_image(path, color)
    if height > 0 and width > 0:
        image = resize_linear(image, height, width)
    return image


class ImageListSource(BatchSource):
    """Image files named by a list file (ImageData layer)."""
    decodes = True

    def __init__(self, list_path, root_folder, color, height, width, *args, **kwargs):
        self.list_path, self.entries = list_path, read_list_file(list_path)
        if not self.entries:
            raise CaffeError(f"list file '{list_path}' names no images")
        self.root_folder, self.color = root_folder, color
        self.height, self.width = height, width
        super().__init__(*args, **kwargs)

    @property
    def num_records(self):
        return len(self.entries)

    def read_records(self, indices):
        for index in indices:
            name, label, line = self.entries[index]
            where = f"{self.list_path}:{line}: image '{name}'"
            try:
                image = load_image_file(self.root_folder + name, self.color,
                                        self.height, self.width)
            except (OSError, ImageDecodeError) as exc:
                raise CaffeError(f"{where}: could not load {self.root_folder + name}: "
                                 f"{exc}") from None
            yield image.transpose(2, 0, 1), label, where

    def close(self):
        """Nothing to release."""
