"""Caffe's DataTransformer: crop, mirror, subtract the mean, scale — in that order.

For every pixel Caffe computes ``(x - mean) * scale`` (or ``x * scale``
without a mean) in float32, reading ``x`` at the crop offset and writing it
mirrored when asked; we do the same on whole arrays, so the values agree to the
bit.  Randomness (mirror in TRAIN, crop offsets in TRAIN; TEST crops the
centre) comes from a numpy Generator the caller passes in, drawn in Caffe's
order (mirror coin, then row offset, then column offset), so a data layer can
derive it from the seed and the batch number and stay deterministic however
its prefetch threads are scheduled.
"""
import os

import numpy as np

from ..errors import CaffeError
from ..io import blobproto_to_array
from ..layer import TRAIN
from ..proto import caffe_pb2
from ..proto_io import read_binary_proto


class DataTransformer:
    """Apply a TransformationParameter to (C, H, W) images for one phase."""

    def __init__(self, param, phase, owner="transform_param"):
        self.param, self.phase, self.owner = param, phase, owner
        if param.force_color and param.force_gray:
            raise CaffeError(f"{owner}: cannot set both force_color and force_gray")
        if param.HasField("mean_file") and len(param.mean_value):
            raise CaffeError(f"{owner}: cannot specify mean_file and mean_value at the same "
                             f"time")
        self.scale = np.float32(param.scale)
        self.crop = int(param.crop_size)
        self.mean = None
        if param.HasField("mean_file"):
            self.mean = self._read_mean_file(param.mean_file)
        self.mean_values = np.asarray(param.mean_value, dtype=np.float32)

    def __getstate__(self):
        """Pickled for a prefetch worker process: the parameter travels as its bytes (the
        generated message classes do not pickle by reference)."""
        return {**self.__dict__, "param": self.param.SerializeToString()}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.param = caffe_pb2.TransformationParameter.FromString(state["param"])

    def _read_mean_file(self, path):
        if not os.path.exists(path):
            raise CaffeError(f"{self.owner}: mean_file '{path}' does not exist")
        blob = read_binary_proto(path, caffe_pb2.BlobProto())
        mean = blobproto_to_array(blob).astype(np.float32)
        return mean.reshape(mean.shape[-3:])

    @property
    def decode_color(self):
        """How encoded images are decoded: forced colour/gray, or None for as stored."""
        if self.param.force_color:
            return True
        return False if self.param.force_gray else None

    def output_shape(self, image_shape):
        """(C, H, W) of the transformed image, checking the crop fits (InferBlobShape)."""
        channels, height, width = image_shape
        if self.crop:
            if height < self.crop or width < self.crop:
                raise CaffeError(f"{self.owner}: crop_size {self.crop} is larger than the "
                                 f"{height}x{width} image")
            return channels, self.crop, self.crop
        return channels, height, width

    def check(self, image_shape, where):
        """Raise a CaffeError naming ``where`` if the mean does not fit ``image_shape``."""
        if self.mean is not None and self.mean.shape != tuple(image_shape):
            raise CaffeError(f"{where}: image shape {tuple(image_shape)} differs from the "
                             f"mean file's {self.mean.shape}")
        if len(self.mean_values) not in (0, 1, image_shape[0]):
            raise CaffeError(f"{where}: specify either 1 mean_value or as many as channels "
                             f"({image_shape[0]}), got {len(self.mean_values)}")

    def _offsets(self, height, width, generator):
        mirror = bool(self.param.mirror) and bool(generator.integers(2))
        if not self.crop:
            return mirror, 0, 0
        if self.phase == TRAIN:
            return mirror, int(generator.integers(height - self.crop + 1)), \
                int(generator.integers(width - self.crop + 1))
        return mirror, (height - self.crop) // 2, (width - self.crop) // 2

    def transform(self, image, generator, out, where="image"):
        """Write the transformed ``image`` (C, H, W, uint8 or float) into ``out`` (float32)."""
        self.check(image.shape, where)
        channels, height, width = image.shape
        mirror, top, left = self._offsets(height, width, generator)
        rows = slice(top, top + (self.crop or height))
        cols = slice(left, left + (self.crop or width))
        values = image[:, rows, cols].astype(np.float32)
        if self.mean is not None:
            values -= self.mean[:, rows, cols]
        elif len(self.mean_values):
            values -= np.broadcast_to(self.mean_values, (channels,))[:, None, None]
        values *= self.scale
        out[...] = values[:, :, ::-1] if mirror else values
