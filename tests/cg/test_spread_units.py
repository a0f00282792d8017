"""Unit kernels marked ``spread`` (fast mode): one contiguous share per host thread when the
call is large, one call otherwise, and the same bits with any thread count."""
import threading

import numpy as np
import pytest

from pycaffe_mct.cg import ops, scheduler

HOSTS = {count: scheduler.HostThreads(count) for count in (1, 3)}


@pytest.fixture
def three_threads(monkeypatch):
    monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[3])
    with scheduler.execution("fast"):
        yield


def calls_of(count, unit_bytes, spread):
    """(lo, hi, thread) of every call ``scheduler.units`` makes of its run."""
    calls = []
    scheduler.units("k", count, unit_bytes, 0, 0,
                    lambda lo, hi: calls.append((lo, hi, threading.get_ident())), spread=spread)
    return sorted(calls)


def test_a_large_spread_call_runs_one_share_per_host_thread(three_threads):
    """The first share on this thread, the others on the helper threads."""
    calls = calls_of(1000, scheduler.SPREAD_BYTES // 1000 + 1, spread=True)
    assert [(lo, hi) for lo, hi, _ in calls] == [(0, 333), (333, 666), (666, 1000)]
    caller = threading.get_ident()
    assert [thread == caller for _, _, thread in calls] == [True, False, False]


@pytest.mark.parametrize("unit_bytes,spread", [(scheduler.SPREAD_BYTES, False),
                                               (scheduler.SPREAD_BYTES // 1000 - 1, True)])
def test_an_unmarked_or_small_call_runs_whole_on_this_thread(three_threads, unit_bytes, spread):
    assert calls_of(1000, unit_bytes, spread) == [(0, 1000, threading.get_ident())]


def test_a_spread_call_inside_a_lane_runs_whole(three_threads):
    """A lane is already one of the host threads: its kernels do not spread again."""
    seen = []
    scheduler.lanes([(0, 1), (1, 2)], lambda lane, run, lo, hi: seen.append(
        calls_of(10, scheduler.SPREAD_BYTES, spread=True)))
    assert [[(lo, hi) for lo, hi, _ in calls] for calls in seen] == [[(0, 10)], [(0, 10)]]


def test_spread_pooling_gives_the_same_bits_with_any_thread_count(monkeypatch):
    """Max and average pooling of a 1 MiB batch, forward and backward, on 1 and 3 threads."""
    x = np.random.default_rng(3).standard_normal((4, 64, 32, 32)).astype(np.float32)
    window = ((3, 3), (2, 2), (1, 1))
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(scheduler.EXECUTORS["fast"], "host", HOSTS[threads])
        top = np.empty((4, 64, 16, 16), np.float32)
        argmax = np.empty(top.shape, np.int32)
        average = np.empty_like(top)
        max_diff, ave_diff = np.empty_like(x), np.empty_like(x)
        with scheduler.execution("fast"):
            ops.max_pool_forward(x, *window, top, argmax)
            ops.max_pool_backward(top, argmax, max_diff)
            ops.ave_pool_forward(x, *window, average)
            ops.ave_pool_backward(average, *window, ave_diff)
        results.append((top, argmax, max_diff, average, ave_diff))
    for one, three in zip(*results):
        np.testing.assert_array_equal(one, three)
