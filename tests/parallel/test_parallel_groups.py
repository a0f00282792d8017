"""Model groups: the phase's division of the world, re-division, exchanges between models."""
import pytest

from mpi_jobs import needs_mpi, run_mpi_ok
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.parallel.groups import CALIBRATE, PRETRAIN, group_sizes


@pytest.mark.parametrize("world, phase, ratio, sizes", [
    (1, PRETRAIN, 9.0, (1, 1)),          # one rank trains both models
    (4, CALIBRATE, 9.0, (2, 2)),         # calibration: equal, whatever the data ratio
    (5, CALIBRATE, 1.0, (3, 2)),         # the odd rank goes to M_p
    (4, PRETRAIN, 3.0, (3, 1)),          # noisy:clean = 3:1
    (10, PRETRAIN, 1.5, (6, 4)),
    (4, PRETRAIN, 100.0, (3, 1)),        # each model keeps at least one rank
    (4, PRETRAIN, 0.01, (1, 3)),
])
def test_group_sizes_follow_the_phase(world, phase, ratio, sizes):
    assert group_sizes(world, phase, ratio) == sizes


def test_bad_phase_and_ratio_are_named():
    with pytest.raises(CaffeError, match="unknown MCT phase 'warmup'"):
        group_sizes(4, "warmup")
    with pytest.raises(CaffeError, match="ratio must be positive"):
        group_sizes(4, PRETRAIN, 0.0)


@pytest.mark.slow
@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("ranks, division", [(1, "1+1"), (3, "2+1"), (4, "2+2")])
def test_groups_resplit_and_exchange_confidences_and_soft_targets(ranks, division):
    out = run_mpi_ok(ranks, "groups", 3.0)
    assert out.count(f"groups ok ({division})") == ranks
