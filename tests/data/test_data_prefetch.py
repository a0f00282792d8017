"""Prefetcher: order, bounded depth, errors in the caller's thread, clean shutdown."""
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pycaffe_mct.data.prefetch import Prefetcher


class CountingProducer:
    def __init__(self, fail_at=None):
        self.produced, self.fail_at = [], fail_at

    def __call__(self, index):
        if index == self.fail_at:
            raise ValueError(f"record {index} is broken")
        self.produced.append(index)
        return index


def test_batches_come_in_order_from_the_start_index():
    prefetcher = Prefetcher(CountingProducer(), depth=2, first=5)
    assert [prefetcher.next() for _ in range(4)] == [5, 6, 7, 8]
    prefetcher.close()


def test_queue_is_bounded_by_depth():
    producer = CountingProducer()
    prefetcher = Prefetcher(producer, depth=3)
    time.sleep(0.3)
    assert len(producer.produced) <= 3 + 1       # depth queued + one waiting to be put
    prefetcher.next()
    prefetcher.close()


def test_exception_in_thread_surfaces_in_caller():
    prefetcher = Prefetcher(CountingProducer(fail_at=2), depth=2)
    assert [prefetcher.next(), prefetcher.next()] == [0, 1]
    with pytest.raises(ValueError, match="record 2 is broken"):
        prefetcher.next()
    prefetcher.close()


def test_restart_drops_queued_batches():
    prefetcher = Prefetcher(CountingProducer(), depth=2)
    prefetcher.next()
    prefetcher.start(10)
    assert prefetcher.next() == 10
    prefetcher.close()


def test_close_joins_the_thread():
    before = threading.active_count()
    prefetcher = Prefetcher(CountingProducer(), depth=1)
    assert prefetcher.running
    prefetcher.close()
    prefetcher.close()
    assert not prefetcher.running and threading.active_count() == before


def test_interpreter_exits_with_prefetchers_left_running():
    script = textwrap.dedent("""
        from pycaffe_mct.data.prefetch import Prefetcher
        keep = [Prefetcher(lambda i: i, depth=2) for _ in range(3)]
        print(keep[0].next())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "0"


def test_depth_zero_produces_in_the_callers_thread():
    callers = []
    prefetcher = Prefetcher(lambda i: callers.append(threading.get_ident()) or i, depth=0,
                            first=3)
    assert [prefetcher.next(), prefetcher.next()] == [3, 4]
    assert set(callers) == {threading.get_ident()} and not prefetcher.running
    prefetcher.start(7)
    assert prefetcher.next() == 7


def _fails_at_two(index):
    from pycaffe_mct.errors import CaffeError
    if index == 2:
        raise CaffeError("source s, key k: broken record")
    return index * 10


def test_process_worker_gives_batches_and_hands_over_errors():
    from pycaffe_mct.errors import CaffeError
    prefetcher = Prefetcher(_fails_at_two, depth=2, process=True)
    assert [prefetcher.next(), prefetcher.next()] == [0, 10]
    with pytest.raises(CaffeError, match="source s, key k: broken record"):
        prefetcher.next()
    prefetcher.close()


def _same(index):
    return index


def test_process_worker_stops_on_close_and_restarts():
    prefetcher = Prefetcher(_same, depth=2, first=4, process=True)
    assert prefetcher.next() == 4
    worker = prefetcher._worker
    prefetcher.start(9)
    assert not worker.is_alive() and prefetcher.next() == 9
    prefetcher.close()
    assert not prefetcher.running


def test_process_worker_is_not_a_fork_of_the_threaded_trainer():
    prefetcher = Prefetcher(_same, depth=1, process=True)
    assert prefetcher._worker._start_method in ("forkserver", "spawn")
    assert prefetcher.next() == 0
    prefetcher.close()
