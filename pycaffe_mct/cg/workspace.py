"""Scratch buffers shared by all layers (im2col columns and the like).

Caffe gives every convolution its own column buffer; sharing a few growable
slots instead keeps a deep net's memory close to the sum of its blobs.  A slot
is only valid until the next call that asks for the same slot.
"""
import math

import numpy as np

_slots = {}


def workspace(slot, shape):
    """A float32 array of ``shape`` backed by scratch slot ``slot``."""
    count = math.prod(shape)  # not np.prod: this runs per chunk, and np.prod costs 10x more
    buffer = _slots.get(slot)
    if buffer is None or buffer.size < count:
        buffer = np.empty(count, dtype=np.float32)
        _slots[slot] = buffer
    return buffer[:count].reshape(shape)


def workspace_bytes():
    """Bytes currently held by all scratch slots."""
    return sum(buffer.nbytes for buffer in _slots.values())
