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
@pytest.mark.parametrize("ranks, ratio, division", [(1, 3.0, "1+1"), (3, 3.0, "2+1"),
                                                     (4, 3.0, "2+2"), (4, 0.5, "2+2")])
def test_groups_resplit_gather_rows_and_hand_over_state(ranks, ratio, division):
    # 4 ranks at 3.0 go 3+1 -> 2+2 (rank 2 joins M_a); at 0.5 1+3 -> 2+2 (rank 1,
    # M_a's old root, joins M_p).
    out = run_mpi_ok(ranks, "groups", ratio)
    assert out.count(f"groups ok ({division})") == ranks


def _splits(noisy, clean):
    """A ``problem`` function: M_p's ranks must split ``noisy``, M_a's ``clean``."""
    def problem(primary, aux):
        if noisy % primary:
            return f"noisy batch {noisy} over {primary}"
        if clean % aux:
            return f"clean batch {clean} over {aux}"
        return None
    return problem


def test_pretraining_takes_the_nearest_division_that_splits_the_batches():
    assert group_sizes(4, PRETRAIN, 2.0) == (3, 1)                      # 2.67 rounds to 3
    assert group_sizes(4, PRETRAIN, 2.0, _splits(64, 32)) == (2, 2)     # 64 % 3 != 0
    assert group_sizes(6, PRETRAIN, 2.0, _splits(42, 9)) == (3, 3)      # 4+2, 5+1 fail


def test_a_division_that_cannot_split_is_refused_with_the_reason():
    with pytest.raises(CaffeError, match="4 ranks cannot be divided between M_p and M_a "
                                         "for calibrate: noisy batch 9 over 2"):
        group_sizes(4, CALIBRATE, 1.0, _splits(9, 4))
    with pytest.raises(CaffeError, match="for pretrain: noisy batch 7 over 3"):
        group_sizes(4, PRETRAIN, 2.0, _splits(7, 5))
