"""Data layers: Data (LMDB), ImageData (list file), MemoryData (arrays from Python).

Data and ImageData produce their batches in a background ``Prefetcher``
(``data_param.prefetch`` batches ahead, Caffe's default 4; a thread for raw
Datums, a worker process when images must be decoded), each batch a pure
function of its number (see ``pycaffe_mct.data.sources``), so
``restore_iteration`` can put a resumed solver on exactly the batches an
uninterrupted run would read.  In TRAIN each rank reads its own share of the
records (``pycaffe_mct.data.partition``); in TEST every rank reads them all, as
in Caffe.  Tops are ``data`` (N, C, H, W) and ``label`` (N,), as Caffe's.
"""
import weakref

import numpy as np

from .. import rng
from ..data.lmdb_io import LMDBReader
from ..data.partition import Partition, default_partition
from ..data.prefetch import Prefetcher
from ..data.sources import ImageListSource, LMDBSource
from ..data.transformer import DataTransformer
from ..errors import CaffeError
from ..layer import TRAIN, Layer, register_layer
from ..proto import caffe_pb2


def _log(severity, message, where=None):
    """Log on the default writer, tagged with ``where`` or else the calling line."""
    from ..solvers import log     # imported late: solvers build nets, nets build data layers
    getattr(log.default_writer(), severity)(message, where=where, stacklevel=2)


def _close_source(prefetcher, source):
    prefetcher.close()
    source.close()


class _PrefetchingDataLayer(Layer):
    """Common part of Data and ImageData: partition, seed, prefetcher, forward."""
    exact_bottoms = 0
    min_tops, max_tops = 1, 2

    def _start(self, top, make_source, batch_size, rand_skip, shuffle):
        """Build the source, size the tops from its first record, start prefetching."""
        if batch_size <= 0:
            raise self.error("batch_size must be positive")
        rank, world_size = default_partition() if self.phase == TRAIN else (0, 1)
        seed = rng.random_seed() or 0
        self.source = None
        try:
            self.source = make_source(seed, rank, world_size, shuffle)
            if rand_skip:
                skip = int(np.random.default_rng([seed, 1, rand_skip]).integers(rand_skip))
                _log("info", f"Skipping first {skip} data points.")
                self.source.skip = skip
            shape = self.source.first_record_shape()
        except CaffeError as exc:
            if self.source is not None:
                self.source.close()
            raise self.error(str(exc)) from None
        top[0].reshape((batch_size,) + shape)
        if len(top) > 1:
            top[1].reshape(batch_size)
        _log("info", "output data size: " + ",".join(map(str, top[0].shape)))
        self.next_batch = 0
        in_process = self.source.decodes
        self.prefetcher = Prefetcher(self.source.produce, depth=self.param.data_param.prefetch,
                                     name=f"prefetch {self.name}", process=in_process,
                                     on_start=self.source.start_in_worker if in_process else None,
                                     slot_bytes=4 * (top[0].count + batch_size))
        self._finalizer = weakref.finalize(self, _close_source, self.prefetcher, self.source)

    def _partition(self, num_records, seed, rank, world_size, shuffle):
        partition = Partition(num_records, rank, world_size, seed, shuffle)
        if partition.epoch_size == 0:
            raise self.error(f"rank {rank} of {world_size} gets no records: the data set "
                             f"has only {num_records}")
        return partition

    def reshape(self, bottom, top):
        """Tops take each batch's shape in forward, as in Caffe."""

    def forward_cpu(self, bottom, top):
        try:
            data, labels = self.prefetcher.next()
        except CaffeError as exc:
            raise self.error(str(exc)) from None
        self.next_batch += 1
        top[0].reshape(data.shape)
        top[0].data[...] = data
        if len(top) > 1:
            top[1].reshape(labels.shape)
            top[1].data[...] = labels

    def restore_iteration(self, iteration, iter_size=1):
        """Continue with the batches of training iteration ``iteration`` (of ``iter_size``
        forward passes each); TEST layers keep their place, as Caffe's do."""
        if self.phase != TRAIN:
            return
        self.next_batch = int(iteration) * int(iter_size)
        self.prefetcher.start(self.next_batch)

    def close(self):
        """Stop prefetching and release the database now rather than at collection."""
        self._finalizer()


@register_layer("Data")
class DataLayer(_PrefetchingDataLayer):
    """Batches of Datums from an LMDB (``data_param``)."""

    def layer_setup(self, bottom, top):
        p = self.param.data_param
        # Caffe's default backend is LEVELDB; only an explicit LEVELDB is refused, so a
        # prototxt that leaves the backend out reads its LMDB.
        if p.HasField("backend") and p.backend == caffe_pb2.DataParameter.LEVELDB:
            raise self.error(f"backend LEVELDB ('{p.source}') is not supported; convert "
                             f"the data with convert_imageset --backend lmdb")
        if not p.source:
            raise self.error("data_param.source is empty")
        transformer = DataTransformer(self.param.transform_param, self.phase,
                                      owner=f"layer '{self.name}'")

        def make_source(seed, rank, world_size, shuffle):
            reader = LMDBReader(p.source)
            if reader.note:
                _log("warning", reader.note)
            _log("info", f"Opened lmdb {p.source}", "db_lmdb.cpp:35")
            try:
                partition = self._partition(len(reader), seed, rank, world_size, shuffle)
                source = LMDBSource(reader, transformer, p.batch_size, partition, seed)
            except BaseException:
                reader.close()
                raise
            forced = self.param.transform_param.force_color or \
                self.param.transform_param.force_gray
            if forced and not source.decodes:
                _log("error", "force_color and force_gray only for encoded datum",
                     "data_transformer.cpp:152")
            return source

        self._start(top, make_source, p.batch_size, p.rand_skip, shuffle=False)


@register_layer("ImageData")
class ImageDataLayer(_PrefetchingDataLayer):
    """Batches of image files listed in ``image_data_param.source`` ("path label" lines)."""

    def layer_setup(self, bottom, top):
        p = self.param.image_data_param
        if (p.new_height > 0) != (p.new_width > 0):
            raise self.error("new_height and new_width must be set together")
        transformer = DataTransformer(self.param.transform_param, self.phase,
                                      owner=f"layer '{self.name}'")

        def make_source(seed, rank, world_size, shuffle):
            _log("info", f"Opening file {p.source}")
            source = ImageListSource(p.source, p.root_folder, p.is_color, p.new_height,
                                     p.new_width, transformer, p.batch_size, None, seed)
            if shuffle:
                _log("info", "Shuffling data")
            _log("info", f"A total of {source.num_records} images.")
            source.partition = self._partition(source.num_records, seed, rank, world_size,
                                               shuffle)
            return source

        self._start(top, make_source, p.batch_size, p.rand_skip, shuffle=p.shuffle)


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    """Batches from arrays given by ``set_input_arrays`` (pycaffe), without transformation."""
    exact_bottoms = 0
    exact_tops = 2

    def layer_setup(self, bottom, top):
        p = self.param.memory_data_param
        self.batch_size = p.batch_size
        self.item_shape = (p.channels, p.height, p.width)
        if self.batch_size * int(np.prod(self.item_shape)) <= 0:
            raise self.error("batch_size, channels, height and width must all be positive")
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape(self.batch_size)
        self.data = self.labels = None
        self.position = 0

    def set_input_arrays(self, data, labels):
        """Serve ``data`` (N, C, H, W) and ``labels`` (N,) or (N, 1, 1, 1), float32 and
        C-contiguous, N a multiple of batch_size; the arrays are used, not copied."""
        for name, array in (("data array", data), ("labels array", labels)):
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 \
                    or not array.flags.c_contiguous:
                raise self.error(f"{name} must be a C-contiguous float32 numpy array")
        if data.ndim != 4 or data.shape[1:] != self.item_shape:
            raise self.error(f"data array has shape {data.shape}; expected (N,) + "
                             f"{self.item_shape}")
        if labels.shape not in ((len(labels),), (len(labels), 1, 1, 1)):
            raise self.error(f"labels array has shape {labels.shape}; expected (N,) or "
                             f"(N, 1, 1, 1)")
        if data.shape[0] != labels.shape[0]:
            raise self.error("data and labels must have the same first dimension")
        if data.shape[0] == 0 or data.shape[0] % self.batch_size:
            raise self.error(f"first dimensions of input arrays ({data.shape[0]}) must be a "
                             f"multiple of batch size ({self.batch_size})")
        self.data, self.labels, self.position = data, labels.reshape(-1), 0

    def reshape(self, bottom, top):
        """Shapes are fixed by memory_data_param."""

    def forward_cpu(self, bottom, top):
        if self.data is None:
            raise self.error("needs set_input_arrays(data, labels) before forward")
        end = self.position + self.batch_size
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape(self.batch_size, 1, 1, 1)    # Caffe's forward gives labels 4 axes
        top[0].data[...] = self.data[self.position:end]
        top[1].data[...] = self.labels[self.position:end].reshape(-1, 1, 1, 1)
        self.position = end % len(self.data)
