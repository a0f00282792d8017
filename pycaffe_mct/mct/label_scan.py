"""Score a labelled set with one or two deployed models, streaming it in batches.

The records (an LMDB of Datums, or a convert_imageset list file and its root
folder) go through the usual ``BatchSource`` readers and ``DataTransformer``
(TEST phase) in a ``Prefetcher`` worker, a forked process when they must be
decoded, so reading the next batches overlaps the nets' forward passes.  What
stays in memory is one row of class probabilities per record, in a
memory-mapped file the caller places (the report's temporary directory), and
the thumbnails of the lowest-scoring records of each given class; never the
images of the set.
"""
import heapq
import os

import numpy as np
from PIL import Image

from ..data.lmdb_io import LMDBReader
from ..data.prefetch import Prefetcher
from ..data.sources import ImageListSource, LMDBSource
from ..data.transformer import DataTransformer
from ..errors import CaffeError
from ..layer import TEST
from ..net import Net
from ..tools._flags import ProgressBar
from .label_issues import label_quality, labels_outside
from .selection import softmax_rows

THUMBNAIL_SIZE = 64
_PROBABILITY_TOLERANCE = 1e-3


# ---- the records -----------------------------------------------------------------

def open_lmdb(path, transform_param):
    """The records of an LMDB of Datums, transformed as ``transform_param`` says."""
    transformer = DataTransformer(transform_param, TEST, owner="--transform")
    reader = LMDBReader(path)
    try:
        return LMDBSource(reader, transformer, 1, None, 0)
    except BaseException:
        reader.close()
        raise


def open_list(list_path, root_folder, transform_param, color=True, height=0, width=0):
    """The images named by a convert_imageset list file, relative to ``root_folder``."""
    transformer = DataTransformer(transform_param, TEST, owner="--transform")
    return ImageListSource(list_path, root_folder, color, height, width, transformer, 1,
                           None, 0)


def record_key(source, index):
    """The LMDB key, or the path as the list file gives it."""
    if isinstance(source, LMDBSource):
        return source.reader.key(index).decode("utf-8", "replace")
    return source.entries[index][0]


def record_where(source, index):
    """Record ``index`` named for a message: database and key, or list file and line."""
    if isinstance(source, LMDBSource):
        return source.reader.where(index)
    name, _, line = source.entries[index]
    return f"{source.list_path}:{line}: image '{name}'"


def thumbnail(pixels, size=THUMBNAIL_SIZE):
    """A (size, size, 3) uint8 RGB picture of (C, H, W) pixels (BGR, gray or float),
    scaled to fit and centred."""
    image = np.asarray(pixels)
    if image.dtype != np.uint8:
        low, high = float(image.min()), float(image.max())
        image = np.rint((image - low) * (255.0 / max(high - low, 1e-12))).astype(np.uint8)
    rgb = np.repeat(image[:1], 3, 0) if image.shape[0] != 3 else image[::-1]
    picture = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    scale = size / max(picture.size)
    fitted = picture.resize((max(1, round(picture.width * scale)),
                             max(1, round(picture.height * scale))),
                            Image.NEAREST if scale >= 1 else Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (128, 128, 128))
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return np.asarray(canvas)


class BatchProducer:
    """``producer(b)`` -> (data, labels, thumbnails) of records [b * batch_size, ...).

    A class rather than a closure: a decoding source runs it in a worker process started
    from a fork server, which receives it pickled."""

    def __init__(self, source, batch_size, thumbnail_size=THUMBNAIL_SIZE):
        self.source, self.batch_size, self.thumbnail_size = source, batch_size, thumbnail_size
        self.generator = np.random.default_rng(0)     # TEST-phase transforms draw nothing

    def __call__(self, batch_index):
        start, total = batch_index * self.batch_size, self.source.num_records
        records = list(self.source.read_records(range(start, min(start + self.batch_size,
                                                                 total))))
        if not records:                        # prefetched past the end
            return (np.zeros(0, np.float32),) * 2 + (np.zeros(0, np.uint8),)
        data, labels = self.source.transform_records(records, self.generator, len(records))
        thumbnails = np.stack([thumbnail(pixels, self.thumbnail_size)
                               for pixels, _, _ in records])
        return data, labels, thumbnails


# ---- the models ------------------------------------------------------------------

class DeployedModel:
    """A deploy net and its weights; ``probabilities(data)`` -> (N, K)."""

    def __init__(self, model, weights, blob=None):
        for path, what in ((model, "model"), (weights, "weights")):
            if not os.path.isfile(path):
                raise CaffeError(f"{what} file '{path}' does not exist")
        self.model, self.weights = model, weights
        self.net = Net(model, TEST, weights=weights)
        if not self.net.inputs:
            raise CaffeError(f"{model}: the net has no Input layer to feed images into")
        self.input = self.net.inputs[0]
        self.blob = blob or self._only_output()
        if self.blob not in self.net.blobs:
            raise CaffeError(f"{model}: the net has no blob '{self.blob}'")
        output = self.net.blobs[self.blob]
        self.num_classes = output.count // max(1, output.shape[0])
        self.applies_softmax = False

    def _only_output(self):
        outputs = self.net.outputs
        if len(outputs) != 1:
            raise CaffeError(f"{self.model}: the net has outputs {outputs}; name the "
                             f"probabilities or class scores with --blob")
        return outputs[0]

    def check_input(self, shape):
        expected = tuple(self.net.blobs[self.input].shape[1:])
        if tuple(shape) != expected:
            raise CaffeError(f"{self.model}: input '{self.input}' takes "
                             f"{'x'.join(map(str, expected))} images, the transformed records "
                             f"are {'x'.join(map(str, shape))} (see --transform, "
                             f"--resize-height/--resize-width)")

    def probabilities(self, data):
        """Class probabilities; scores that are not already probabilities get a softmax."""
        scores = self.net.forward(**{self.input: data})[self.blob]
        scores = scores.reshape(len(data), -1).astype(np.float64)
        if self.applies_softmax or (scores.min() < 0 or np.abs(scores.sum(axis=1) - 1).max()
                                    > _PROBABILITY_TOLERANCE):
            self.applies_softmax = True
            return softmax_rows(scores)
        return scores


class Ensemble:
    """M_p alone, or M_p and M_a with their probabilities averaged (as MCT's selection)."""

    def __init__(self, models):
        self.models = models
        first = models[0]
        for other in models[1:]:
            if other.num_classes != first.num_classes:
                raise CaffeError(f"the models' class counts differ: {first.model} scores "
                                 f"{first.num_classes} classes, {other.model} "
                                 f"{other.num_classes}")
        self.num_classes = first.num_classes

    def probabilities(self, data):
        return sum(model.probabilities(data) for model in self.models) / len(self.models)

    def check_input(self, shape):
        for model in self.models:
            model.check_input(shape)

    def describe(self):
        return [{"model": m.model, "weights": m.weights, "blob": m.blob,
                 "softmax_applied": m.applies_softmax} for m in self.models]


# ---- the scan --------------------------------------------------------------------

class Suspects:
    """The ``per_class`` lowest-quality records of each given class, with thumbnails."""

    def __init__(self, num_classes, per_class):
        self.per_class = per_class
        self._heaps = [[] for _ in range(num_classes)]     # max-heaps on quality

    def offer(self, indices, labels, quality, thumbnails):
        if not self.per_class:
            return
        for index, label, score, picture in zip(indices, labels, quality, thumbnails):
            heap = self._heaps[label]
            entry = (-float(score), -int(index), picture)
            if len(heap) < self.per_class:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)

    def thumbnails(self):
        """{record index: thumbnail} of everything kept."""
        return {-entry[1]: entry[2] for heap in self._heaps for entry in heap}


def _first_shape(source):
    [(pixels, _, where)] = list(source.read_records([0]))
    source.transformer.check(pixels.shape, where)
    return source.transformer.output_shape(pixels.shape)


def scan(source, ensemble, probs_path, batch_size=64, suspects_per_class=40, prefetch=4,
         progress=None):
    """(probs memmap (N, K) at ``probs_path``, given labels (N,), Suspects) of a set."""
    total, classes = source.num_records, ensemble.num_classes
    shape = _first_shape(source)
    ensemble.check_input(shape)
    probs = np.lib.format.open_memmap(probs_path, "w+", np.float32, (total, classes))
    labels = np.empty(total, np.int64)
    suspects = Suspects(classes, suspects_per_class)
    slot = batch_size * (4 * (int(np.prod(shape)) + 1) + 3 * THUMBNAIL_SIZE ** 2)
    prefetcher = Prefetcher(BatchProducer(source, batch_size), depth=prefetch,
                            name="prefetch label_issues", process=source.decodes,
                            on_start=source.start_in_worker if source.decodes else None,
                            slot_bytes=slot)
    bar = ProgressBar(total, "records", progress)
    try:
        for start in range(0, total, batch_size):
            data, batch_labels, thumbnails = prefetcher.next()
            stop = start + len(batch_labels)
            given = batch_labels.astype(np.int64)
            _check_batch_labels(source, given, classes, start)
            batch_probs = ensemble.probabilities(data)
            probs[start:stop] = batch_probs
            labels[start:stop] = given
            suspects.offer(range(start, stop), given, label_quality(batch_probs, given),
                           thumbnails)
            bar.update(stop)
    finally:
        prefetcher.close()
    bar.finish(total)
    probs.flush()
    return probs, labels, suspects


def _check_batch_labels(source, labels, classes, start):
    bad = labels_outside(labels, classes)
    if len(bad):
        raise CaffeError(f"{record_where(source, start + int(bad[0]))}: label "
                         f"{int(labels[bad[0]])} is outside the model's {classes} classes "
                         f"(0..{classes - 1}): the model and the labels disagree on the "
                         f"class count")
