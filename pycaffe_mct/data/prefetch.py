"""Background batch production with a bounded queue (Caffe's prefetch threads).

A ``Prefetcher`` runs ``produce(batch_index)`` for consecutive batch indices
in a daemon thread and keeps at most ``depth`` finished batches in a queue, so
decoding and transforming the next batches overlaps the compute of the current
one (``depth`` 2 is double buffering; Caffe's default ``prefetch`` is 4).

Because each batch is a pure function of its index, restarting at another
index (a resumed solver) gives exactly the batches an uninterrupted run reads.
An exception in the thread is handed over and raised by the next ``next()`` in
the caller's thread.  ``depth`` 0 produces each batch in ``next()`` itself, with
no thread (for debugging, and as the baseline of bench/bench_prefetch.py).  ``close()`` stops and joins the thread; owners register
it with ``weakref.finalize`` and every live prefetcher is closed at exit, so no
thread outlives its data layer or keeps the interpreter from exiting.
"""
import atexit
import queue
import threading
import weakref

_live = weakref.WeakSet()
_POLL_SECONDS = 0.05


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class Prefetcher:
    """Produce batches ``first, first + 1, ...`` ahead of time in a daemon thread."""

    def __init__(self, produce, depth=4, first=0, name="prefetch"):
        self.produce, self.depth, self.name = produce, max(0, int(depth)), name
        self._thread = None
        self.start(first)
        _live.add(self)

    def start(self, first):
        """(Re)start producing at batch ``first``; anything queued before is dropped."""
        self.close()
        self._next_index = first
        if not self.depth:
            return
        self._queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(first, self._queue, self._stop),
                                        name=self.name, daemon=True)
        self._thread.start()

    def _run(self, index, out, stop):
        while not stop.is_set():
            try:
                item = self.produce(index)
            except BaseException as exc:          # handed to the consumer, not lost
                item = _Failure(exc)
            while not stop.is_set():
                try:
                    out.put(item, timeout=_POLL_SECONDS)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return
            index += 1

    def next(self):
        """The next batch, waiting for it; re-raises an exception of the thread."""
        if not self.depth:
            self._next_index += 1
            return self.produce(self._next_index - 1)
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"{self.name}: prefetch thread stopped") from None
        if isinstance(item, _Failure):
            raise item.exc
        return item

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def close(self):
        """Stop the thread and wait for it; safe to call more than once."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None


@atexit.register
def _close_all():
    for prefetcher in list(_live):
        prefetcher.close()
