"""Partition: disjoint per rank, the whole set every epoch, deterministic shuffles."""
import numpy as np
import pytest

from pycaffe_mct.data import Partition
from pycaffe_mct.errors import CaffeError


@pytest.mark.parametrize("size,world", [(10, 1), (10, 2), (10, 3), (7, 4), (3, 5), (12, 12)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_are_disjoint_and_cover_the_set_each_epoch(size, world, shuffle):
    parts = [Partition(size, rank, world, seed=3, shuffle=shuffle) for rank in range(world)]
    for epoch in range(3):
        orders = [list(p.epoch_order(epoch)) for p in parts]
        together = sum(orders, [])
        assert sorted(together) == list(range(size))
        assert max(map(len, orders)) - min(map(len, orders)) <= 1


def test_unshuffled_order_is_caffes_round_robin():
    assert list(Partition(10, 1, 3).epoch_order(4)) == [1, 4, 7]


def test_shuffle_is_deterministic_and_differs_between_epochs():
    a, b = Partition(50, 0, 2, seed=9, shuffle=True), Partition(50, 0, 2, seed=9, shuffle=True)
    assert list(a.epoch_order(1)) == list(b.epoch_order(1))
    assert list(a.epoch_order(0)) != list(a.epoch_order(1))
    assert list(Partition(50, 0, 2, seed=8, shuffle=True).epoch_order(1)) != \
        list(a.epoch_order(1))


def test_locate_walks_epoch_after_epoch():
    part = Partition(5, 1, 2)                      # rank 1 reads records 1 and 3
    assert [part.locate(p) for p in range(5)] == [(0, 1), (0, 3), (1, 1), (1, 3), (2, 1)]


def test_rank_beyond_the_set_gets_nothing_and_is_told():
    part = Partition(2, 3, 4)
    assert part.epoch_size == 0 and len(part.epoch_order(0)) == 0
    with pytest.raises(CaffeError, match="rank 3 of 4 gets no records.*only 2"):
        part.locate(0)


def test_bad_rank_is_refused():
    with pytest.raises(CaffeError, match="rank 2 is not in 0..1"):
        Partition(5, 2, 2)


def test_orders_are_integer_arrays():
    assert Partition(4, 0, 1, shuffle=True).epoch_order(0).dtype.kind == "i"
    assert np.array_equal(Partition(4).epoch_order(0), np.arange(4))
