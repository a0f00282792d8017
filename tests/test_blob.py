"""Blob: shapes, legacy accessors, storage kept across reshapes, sharing and views."""
import os
import subprocess
import sys

import numpy as np
import pytest

from pycaffe_mct.blob import Blob
from pycaffe_mct.errors import CaffeError


def test_shape_count_and_legacy_accessors():
    blob = Blob((2, 3, 4, 5))
    assert blob.shape == (2, 3, 4, 5) and blob.count == 120 and blob.num_axes == 4
    assert (blob.num, blob.channels, blob.height, blob.width) == (2, 3, 4, 5)
    assert blob.count_axes(1, 3) == 12 and blob.canonical_axis(-1) == 3
    flat = Blob((6, 7))
    assert (flat.num, flat.channels, flat.height, flat.width) == (6, 7, 1, 1)
    assert blob.data.dtype == np.float32 and blob.diff.shape == blob.shape
    assert Blob().shape == (0,) and Blob(()).count == 1


def test_reshape_keeps_storage_until_it_must_grow():
    blob = Blob((4, 5))
    blob.data[...] = np.arange(20).reshape(4, 5)
    storage = blob.data.base
    blob.reshape(2, 5)
    assert blob.data.base is storage
    np.testing.assert_array_equal(blob.data.ravel(), np.arange(10))
    blob.reshape((3, 3, 3))
    assert blob.data.base is not storage and blob.count == 27


def test_writes_through_data_and_diff_reach_the_blob():
    blob = Blob((2, 2))
    blob.data = [[1, 2], [3, 4]]
    blob.diff[0] = 5
    np.testing.assert_array_equal(blob.data, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(blob.diff, [[5, 5], [0, 0]])


def test_share_data_and_view_of():
    a, b = Blob((2, 3)), Blob((3, 2))
    b.share_data(a)
    a.data[...] = 7
    np.testing.assert_array_equal(b.data, 7)
    b.diff[...] = 1
    assert a.diff.sum() == 0                        # only data is shared
    view = Blob()
    view.view_of(a, (6,))
    view.diff[...] = 2
    np.testing.assert_array_equal(a.diff, 2)
    with pytest.raises(CaffeError, match=r"cannot share a blob of shape \(4,\) with one of shape"):
        Blob((5,)).share_data(Blob((4,)))
    with pytest.raises(CaffeError, match=r"cannot view a blob of shape \(2, 3\) as \(5,\)"):
        Blob().view_of(a, (5,))


@pytest.mark.parametrize("shape,message", [((2, -1), "negative dimension"),
                                           ((1,) * 33, "more than 32 axes")])
def test_bad_shapes(shape, message):
    with pytest.raises(CaffeError, match=message):
        Blob(shape)


def test_legacy_accessor_on_a_5_axis_blob_is_refused():
    with pytest.raises(CaffeError, match="legacy accessor"):
        Blob((1, 1, 1, 1, 2)).num


# In a fresh process (glibc's allocator state is the point): a freed 24 MiB temporary raises
# glibc's threshold for mapping an allocation, the next such block then comes from the heap
# and goes back to it unused, and calloc clears every page of it for a storage that takes it.
UNWRITTEN_STORAGE = """
import resource
import numpy as np
from pycaffe_mct.blob import Blob
def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()
temporary = np.ones(3 << 20); del temporary
unused = np.empty(3 << 20); del unused
before = resident()
blob = Blob((3 << 20,))
print(resident() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_storage_costs_no_memory_until_written():
    done = subprocess.run([sys.executable, "-c", UNWRITTEN_STORAGE], capture_output=True,
                          text=True, check=True)
    assert int(done.stdout) < 1 << 20            # of the 24 MiB of data and diff
    blob = Blob((3 << 20,))
    assert blob.data.flags.writeable and not blob.diff.any()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_own_copy_of_the_storage():
    blob = Blob((1 << 16,))                    # 256 KiB: mapped storage
    child = os.fork()
    if child == 0:
        blob.data[...] = 1
        os._exit(0)
    os.waitpid(child, 0)
    assert not blob.data.any()
