"""Data sets as Caffe stores them: Datums in LMDBs, image list files, the transformer,
prefetching, and partitioning of records among ranks."""
from .datum import datum_pixels, encoded_datum, image_to_datum, key_for, parse_datum
from .image import decode_image, encode_image, read_image, resize_linear
from .lmdb_io import LMDBReader, LMDBWriter
from .partition import Partition, default_partition, set_default_partition
from .transformer import DataTransformer

__all__ = ["DataTransformer", "LMDBReader", "LMDBWriter", "Partition", "datum_pixels",
           "decode_image", "default_partition", "encode_image", "encoded_datum",
           "image_to_datum", "key_for", "parse_datum", "read_image", "resize_linear",
           "set_default_partition"]
