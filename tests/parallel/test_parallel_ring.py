"""Ring allreduce (and MPI's, behind the same interface) against numpy sums, on 1-4 ranks."""
import numpy as np
import pytest

from mpi_jobs import needs_mpi, run_mpi_ok
from pycaffe_mct.parallel.ring import as_flat_float32


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_ring_allreduce_matches_numpy_sum(ranks):
    out = run_mpi_ok(ranks, "ring", "ring")
    assert out.count("ring ok") == ranks


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
def test_mpi_allreduce_alternative_matches_numpy_sum():
    out = run_mpi_ok(3, "ring", "mpi")
    assert out.count("mpi ok") == 3


def test_buffers_must_be_contiguous_float32():
    with pytest.raises(TypeError, match="float32"):
        as_flat_float32(np.zeros(3))
    with pytest.raises(ValueError, match="contiguous"):
        as_flat_float32(np.zeros((4, 4), np.float32)[:, 1])
    buffer = np.zeros((2, 3), np.float32)
    assert np.shares_memory(as_flat_float32(buffer), buffer)
