"""HDF5Data and HDF5Output, Caffe's layers for arrays in HDF5 files (needs h5py: the
``[hdf5]`` extra; without it the types are unavailable and say what to install).

HDF5Data reads the files listed in ``hdf5_data_param.source`` (one path per
line; relative to the working directory as in Caffe, else to the list file),
top ``k`` coming from the dataset named like top ``k``, ``batch_size`` rows at a
time, file after file and round again.  With ``shuffle`` the file order is
permuted every pass and the rows of a file every visit, from the seed.  In
TRAIN, rank r of N keeps rows r, r + N, ... of that stream (Caffe's multi-GPU
rule); in TEST every rank reads everything.  Values are read as float32.  A
resumed solver continues on the rows an uninterrupted run would read.

HDF5Output writes its two bottoms to datasets ``data`` and ``label`` of
``hdf5_output_param.file_name`` (4 axes, as Caffe's legacy shapes).  Caffe's
layer fails on a second batch (the datasets exist); ours appends the rows.
"""
import os
import weakref

import numpy as np

from .. import rng
from ..data.partition import default_partition
from ..errors import CaffeError
from ..hdf5 import h5py_missing_reason, h5py_module, read_float_dataset
from ..layer import TRAIN, Layer, register_layer


class _HDF5Layer(Layer):
    @classmethod
    def unavailable_reason(cls):
        return h5py_missing_reason(f"the {cls.type_name} layer")


def _read_source_list(source):
    """The HDF5 file paths listed in ``source`` (whitespace-separated, as Caffe reads them)."""
    try:
        with open(source, encoding="utf-8") as handle:
            names = handle.read().split()
    except OSError as exc:
        raise CaffeError(f"cannot read the HDF5 file list '{source}': {exc.strerror}") from None
    if not names:
        raise CaffeError(f"the HDF5 file list '{source}' names no files")
    beside = os.path.dirname(os.path.abspath(source))
    paths = []
    for name in names:
        if not os.path.isfile(name) and os.path.isfile(os.path.join(beside, name)):
            name = os.path.join(beside, name)
        paths.append(name)
    return paths


class _RowStream:
    """The rows one rank reads, in Caffe's HDF5Data order (see the module docstring)."""

    def __init__(self, paths, load, shuffle, seed, rank, world_size):
        self.paths, self.load = paths, load
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.offset = 0          # rows passed in the stream every rank sees
        self.visit = -1          # files opened so far, counting repeats
        self.loaded_path = None
        self._next_file()

    def _path_of(self, visit):
        """The file read at the ``visit``-th file opening."""
        pass_number, position = divmod(visit, len(self.paths))
        order = np.arange(len(self.paths))
        if self.shuffle:
            order = np.random.default_rng([self.seed, 0, pass_number]).permutation(order)
        return self.paths[order[position]]

    def _next_file(self):
        self.visit += 1
        path = self._path_of(self.visit)
        if path != self.loaded_path:
            self.arrays, self.loaded_path = self.load(path), path
        rows = len(self.arrays[0])
        self.rows = (np.random.default_rng([self.seed, 1, self.visit]).permutation(rows)
                     if self.shuffle else np.arange(rows))
        self.row = 0

    def _advance(self):
        self.offset += 1
        self.row += 1
        if self.row == len(self.rows):
            self._next_file()

    def seek(self, offset, row_count):
        """Continue at stream position ``offset``; ``row_count(path)`` tells a file's rows
        without reading them."""
        visit, remaining = 0, offset
        while remaining >= row_count(self._path_of(visit)):
            remaining -= row_count(self._path_of(visit))
            visit += 1
        self.visit = visit - 1
        self._next_file()
        self.row, self.offset = remaining, offset

    def next_row(self):
        """The arrays of the next row this rank keeps, one per top."""
        while self.offset % self.world_size != self.rank:
            self._advance()
        values = [array[self.rows[self.row]] for array in self.arrays]
        self._advance()
        return values


@register_layer("HDF5Data")
class HDF5DataLayer(_HDF5Layer):
    exact_bottoms = 0
    min_tops = 1

    def layer_setup(self, bottom, top):
        p = self.param.hdf5_data_param
        if self.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data; remove transform_param")
        if p.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be positive")
        try:
            paths = _read_source_list(p.source)
        except CaffeError as exc:
            raise self.error(str(exc)) from None
        self.item_shapes = None
        self.row_counts = {}
        rank, self.world_size = default_partition() if self.phase == TRAIN else (0, 1)
        self.stream = _RowStream(paths, self._load, p.shuffle, rng.random_seed() or 0, rank,
                                 self.world_size)

    def restore_iteration(self, iteration, iter_size=1):
        """Continue with the rows of training iteration ``iteration`` (of ``iter_size``
        batches each), as an uninterrupted run would; TEST layers keep their place."""
        if self.phase != TRAIN:
            return
        rows_read = int(iteration) * int(iter_size) * self.param.hdf5_data_param.batch_size
        self.stream.seek(rows_read * self.world_size, self._row_count)

    def _row_count(self, path):
        """Rows of ``path`` (from its first top's dataset shape), read once per file."""
        if path not in self.row_counts:
            h5py = h5py_module("the HDF5Data layer")
            name = self.param.top[0]
            try:
                with h5py.File(path, "r") as handle:
                    if name not in handle:
                        raise self.error(f"{path} has no dataset named {name}")
                    self.row_counts[path] = handle[name].shape[0]
            except OSError as exc:
                raise self.error(f"cannot read HDF5 file '{path}': {exc}") from None
        return self.row_counts[path]

    def _load(self, path):
        """One file's datasets named by the tops, as float32, checked against each other."""
        h5py = h5py_module("the HDF5Data layer")
        names = list(self.param.top)
        try:
            with h5py.File(path, "r") as handle:
                missing = [name for name in names if name not in handle]
                if missing:
                    raise self.error(f"{path} has no dataset named {', '.join(missing)} "
                                     f"(tops name the datasets); it has {', '.join(handle)}")
                arrays = [read_float_dataset(handle[name], path) for name in names]
        except OSError as exc:
            raise self.error(f"cannot read HDF5 file '{path}': {exc}") from None
        self._check_arrays(path, names, arrays)
        return arrays

    def _check_arrays(self, path, names, arrays):
        if any(array.ndim < 1 for array in arrays):
            raise self.error(f"{path}: datasets need at least 1 axis")
        rows = len(arrays[0])
        if rows == 0:
            raise self.error(f"{path}: dataset '{names[0]}' has no rows")
        for name, array in zip(names, arrays):
            if len(array) != rows:
                raise self.error(f"{path}: dataset '{name}' has {len(array)} rows, "
                                 f"'{names[0]}' has {rows}")
        shapes = [array.shape[1:] for array in arrays]
        if self.item_shapes is None:
            self.item_shapes = shapes
        elif shapes != self.item_shapes:
            raise self.error(f"{path}: rows of shapes {shapes} differ from the first file's "
                             f"{self.item_shapes}")

    def reshape(self, bottom, top):
        batch = self.param.hdf5_data_param.batch_size
        for blob, shape in zip(top, self.item_shapes):
            blob.reshape((batch,) + shape)

    def forward_cpu(self, bottom, top):
        for i in range(self.param.hdf5_data_param.batch_size):
            for blob, values in zip(top, self.stream.next_row()):
                blob.data[i] = values


def _legacy_4d(array):
    """``array`` with Caffe's legacy (num, channels, height, width) shape."""
    if array.ndim > 4:
        raise CaffeError(f"HDF5Output takes blobs of at most 4 axes, got {array.shape}")
    return array.reshape(array.shape + (1,) * (4 - array.ndim))


@register_layer("HDF5Output")
class HDF5OutputLayer(_HDF5Layer):
    exact_bottoms = 2
    exact_tops = 0

    def layer_setup(self, bottom, top):
        file_name = self.param.hdf5_output_param.file_name
        if not file_name:
            raise self.error("hdf5_output_param.file_name is required")
        h5py = h5py_module("the HDF5Output layer")
        try:
            self.file = h5py.File(file_name, "w")     # truncated, as Caffe's H5F_ACC_TRUNC
        except OSError as exc:
            raise self.error(f"cannot create HDF5 file '{file_name}': {exc}") from None
        weakref.finalize(self, self.file.close)

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(f"data and label must have the same number of rows, got "
                             f"{bottom[0].shape} and {bottom[1].shape}")

    def forward_cpu(self, bottom, top):
        for name, blob in (("data", bottom[0]), ("label", bottom[1])):
            rows = _legacy_4d(blob.data)
            if name not in self.file:
                self.file.create_dataset(name, data=rows, maxshape=(None,) + rows.shape[1:],
                                         chunks=True)
                continue
            dataset = self.file[name]
            if dataset.shape[1:] != rows.shape[1:]:
                raise self.error(f"bottom '{name}' changed shape from {dataset.shape[1:]} to "
                                 f"{rows.shape[1:]} per row")
            start = dataset.shape[0]
            dataset.resize(start + len(rows), axis=0)
            dataset[start:] = rows
        self.file.flush()
