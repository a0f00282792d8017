"""Blob: a float32 N-d array of values (``data``) and their gradients (``diff``).

As in Caffe, a blob keeps its storage when reshaped to a size that fits, so a
net allocates its activations once and reuses them every iteration; only
growth reallocates.  ``data`` and ``diff`` are numpy views onto that storage,
so ``blob.data[...] = x`` writes straight into the net.
"""
import contextlib
import math
import mmap

import numpy as np

from .errors import CaffeError, quote

MAX_AXES = 32  # Caffe's kMaxBlobAxes
INT_MAX = 2**31 - 1
MAPPED_BYTES = 1 << 17       # storage this large comes straight from the OS (glibc's own
                             # initial threshold for mapping an allocation)
HUGE_PAGE_BYTES = 1 << 22    # and from this size on asks for huge pages, as numpy does


def checked_count(shape):
    """The element count of ``shape``, refused as Caffe refuses it: more than
    ``MAX_AXES`` axes, a negative dimension, or more than INT_MAX elements."""
    if len(shape) > MAX_AXES:
        raise CaffeError(f"blob shape {quote(shape)} has {len(shape)} axes, more than "
                         f"{MAX_AXES} axes")
    if any(d < 0 for d in shape):
        raise CaffeError(f"blob shape {shape} has a negative dimension")
    count = math.prod(shape)                 # exact: Python integers do not overflow
    if count > INT_MAX:
        raise CaffeError(f"blob shape {shape} holds {count} elements, more than INT_MAX "
                         f"({INT_MAX}), Caffe's limit for one blob")
    return count


def zeroed_storage(count):
    """``count`` float32 zeros whose pages become resident only once written.

    Caffe's SyncedMemory allocates on first use, so a diff that no layer
    writes (a data layer's, BatchNorm's normalised copy's) costs nothing.
    ``np.zeros`` gives that only while glibc maps the allocation itself; once
    a freed temporary (a filler's float64 draw, a Split's dropped storage) has
    raised glibc's mapping threshold, it serves the storage from heap memory
    freed earlier, which calloc clears page by page, and keeps it after it is
    freed.  At ResNet-50 batch 32 that was 0.35 GB resident after building the
    net, before any layer ran.  So large storage is an anonymous mapping of its
    own: zero pages on demand, back to the OS when the storage goes.
    """
    nbytes = count * np.dtype(np.float32).itemsize
    if nbytes < MAPPED_BYTES:
        return np.zeros(count, dtype=np.float32)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)    # a forked child gets a copy
    if nbytes >= HUGE_PAGE_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):       # a kernel without transparent huge pages
            mapping.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mapping, dtype=np.float32)


class _Storage:
    """A growable flat float32 buffer, shareable between blobs."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = np.zeros(0, dtype=np.float32)

    def ensure(self, count):
        if count > self.array.size:
            self.array = zeroed_storage(count)


class Blob:
    """Caffe's Blob: shape, data, diff, with the legacy 4-d accessors."""

    def __init__(self, shape=None):
        """An empty blob (shape (0,)), or one of ``shape``; ``()`` makes a scalar."""
        self._data = _Storage()
        self._diff = _Storage()
        self._shape = ()
        self.reshape(0 if shape is None else tuple(shape))

    # ---- shape -----------------------------------------------------------
    def reshape(self, *shape):
        """Set the shape; storage grows if needed and is otherwise kept."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(d) for d in shape)
        count = checked_count(shape)
        self._shape = shape
        self._data.ensure(count)
        self._diff.ensure(count)

    def reshape_like(self, other):
        self.reshape(other.shape)

    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return math.prod(self._shape)    # not np.prod: layers ask per call, np.prod costs 10x more

    def count_axes(self, start, end=None):
        """Product of the dimensions in [start, end)."""
        end = len(self._shape) if end is None else end
        return math.prod(self._shape[start:end])

    @property
    def num_axes(self):
        return len(self._shape)

    def canonical_axis(self, axis):
        """Turn a possibly negative axis into an index, or raise naming the shape."""
        n = len(self._shape)
        if not -n <= axis < n:
            raise CaffeError(f"axis {axis} out of range for a {n}-axis blob {self._shape}")
        return axis % n if n else 0

    def _legacy(self, index):
        # Caffe's LegacyShape: axes beyond the blob's count as 1.
        if len(self._shape) > 4:
            raise CaffeError(f"legacy accessor used on a blob with shape {self._shape}")
        return self._shape[index] if index < len(self._shape) else 1

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def shape_string(self):
        return " ".join(str(d) for d in self._shape) + f" ({self.count})"

    # ---- values ----------------------------------------------------------
    @property
    def data(self):
        return self._data.array[:self.count].reshape(self._shape)

    @data.setter
    def data(self, value):
        self.data[...] = value

    @property
    def diff(self):
        return self._diff.array[:self.count].reshape(self._shape)

    @diff.setter
    def diff(self, value):
        self.diff[...] = value

    def share_data(self, other):
        """Make this blob read and write ``other``'s values (same count required)."""
        self._check_same_count(other)
        self._data = other._data

    def share_diff(self, other):
        self._check_same_count(other)
        self._diff = other._diff

    def shares_diff_with(self, other):
        """Whether this blob's diff is ``other``'s (shared storage, as after share_diff)."""
        return self._diff is other._diff

    def view_of(self, other, shape):
        """Become ``other`` seen with another shape, sharing data and diff (no copy)."""
        shape = tuple(int(d) for d in shape)
        if math.prod(shape) != other.count:
            raise CaffeError(f"cannot view a blob of shape {other.shape} as {shape}")
        self._data, self._diff, self._shape = other._data, other._diff, shape

    def _check_same_count(self, other):
        if other.count != self.count:
            raise CaffeError(f"cannot share a blob of shape {other.shape} "
                             f"with one of shape {self.shape}")

    def nbytes(self):
        """Bytes held by this blob's own storage (data and diff)."""
        return self._data.array.nbytes + self._diff.array.nbytes

    # ---- protobuf --------------------------------------------------------
    def to_proto(self, proto, write_diff=False):
        """Fill a BlobProto with this blob's shape and values."""
        proto.Clear()
        proto.shape.dim.extend(self._shape)
        proto.data.extend(self.data.ravel().tolist())
        if write_diff:
            proto.diff.extend(self.diff.ravel().tolist())
        return proto

    def __repr__(self):
        return f"Blob(shape={self._shape})"


def has_legacy_shape(proto):
    """Whether a BlobProto uses the old num/channels/height/width fields."""
    return any(proto.HasField(f) for f in ("num", "channels", "height", "width"))


def proto_shape(proto):
    """The shape a BlobProto describes, as Caffe's Blob::FromProto reads it.

    The legacy 4-d fields win when any of them is set; otherwise ``shape``
    (absent or empty means a scalar, which is how Caffe writes 0-axis blobs).
    """
    if has_legacy_shape(proto):
        return (proto.num, proto.channels, proto.height, proto.width)
    return tuple(proto.shape.dim)


def legacy_shape_equals(blob_shape, proto):
    """Caffe's Blob::ShapeEquals for a legacy proto: axes missing in front count as 1."""
    padded = (1,) * (4 - len(blob_shape)) + tuple(blob_shape)
    return len(blob_shape) <= 4 and padded == proto_shape(proto)


def proto_array(proto, diff=False):
    """The values of a BlobProto as a float32 array of its shape.

    As in Caffe, ``data`` must hold exactly one value per element; an absent
    ``diff`` reads as zeros.
    """
    if diff:
        values = proto.double_diff if len(proto.double_diff) else proto.diff
    else:
        values = proto.double_data if len(proto.double_data) else proto.data
    array = np.asarray(values, dtype=np.float32)
    shape = proto_shape(proto)
    count = int(np.prod(shape, dtype=np.int64))
    if diff and array.size == 0:
        return np.zeros(shape, np.float32)
    if array.size != count:
        raise CaffeError(f"BlobProto holds {array.size} values but its shape "
                         f"{shape} needs {count}")
    return array.reshape(shape)
