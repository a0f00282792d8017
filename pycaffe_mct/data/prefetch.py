"""Background batch production with a bounded queue (Caffe's prefetch threads).

A ``Prefetcher`` runs ``produce(batch_index)`` for consecutive batch indices
in a background worker and keeps at most ``depth`` finished batches in a queue,
so reading, decoding and transforming the next batches overlaps the compute of
the current one (``depth`` 2 is double buffering; Caffe's default ``prefetch``
is 4).  ``depth`` 0 produces each batch inside ``next()``, with no worker (for
debugging, and as the baseline of bench/bench_prefetch.py).

The worker is a daemon thread, or, with ``process=True``, a daemon process:
decoding JPEGs holds Python's GIL often enough to slow the training thread's
own work, so sources that decode use a process.  The process is started by
multiprocessing's ``forkserver`` (``spawn`` where there is none), never by a
plain ``fork`` of the training process, which by then runs BLAS, numba and
prefetch threads whose locks a forked child would inherit held (Python 3.12
warns about exactly that; macOS cannot fork safely at all).  So ``produce``
and ``on_start`` must pickle (a source drops its LMDB handle when pickled and
``on_start`` reopens it), and a script that starts such a worker needs the
usual ``if __name__ == "__main__":`` guard.  The server preloads pycaffe_mct
once, so a worker starts in tens of milliseconds, not in an import of numba.

A process hands its batches (tuples of numpy arrays) over through
``depth + 1`` slots of named shared memory of ``slot_bytes`` each; only slot
numbers and shapes go through pipes (pickling megabytes through a pipe costs
more than the decoding on a busy machine).  A batch too big for a slot is
pickled instead.

Because each batch is a pure function of its index, restarting at another
index (a resumed solver) gives exactly the batches an uninterrupted run reads.
An exception in the worker is handed over and raised by the next ``next()`` in
the caller's thread.  ``close()`` stops and joins the worker; owners register
it with ``weakref.finalize`` and every live prefetcher is closed at exit, so no
worker outlives its data layer or keeps the interpreter from exiting.
"""
import atexit
import multiprocessing
from multiprocessing import shared_memory
import queue
import threading
import traceback
import weakref

import numpy as np

from ..errors import CaffeError

_live = weakref.WeakSet()
_POLL_SECONDS = 0.05
# Safe with threads in the parent, on every platform that has it (all but Windows).
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
    else "spawn"


def _process_context():
    """The worker processes' context; the fork server imports pycaffe_mct once, up front."""
    context = multiprocessing.get_context(_START_METHOD)
    if _START_METHOD == "forkserver":
        context.set_forkserver_preload(["pycaffe_mct.data.sources"])
    return context


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def _portable(exc):
    """An exception that survives pickling to the parent, keeping the message."""
    if isinstance(exc, CaffeError):
        return CaffeError(str(exc))
    return RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


class _SharedSlots:
    """Fixed-size slots in a named shared memory block, and a queue of the free ones.

    The owner creates and finally unlinks the block; the worker, given a pickled copy,
    attaches to it by name.
    """

    def __init__(self, context, count, slot_bytes):
        self.slot_bytes = int(slot_bytes)
        self.memory = shared_memory.SharedMemory(create=True,
                                                 size=max(1, count * self.slot_bytes))
        self.free = context.Queue()
        for slot in range(count):
            self.free.put(slot)

    def __getstate__(self):
        return {"slot_bytes": self.slot_bytes, "name": self.memory.name, "free": self.free}

    def __setstate__(self, state):
        self.slot_bytes, self.free = state["slot_bytes"], state["free"]
        self.memory = shared_memory.SharedMemory(name=state["name"])

    def release(self):
        """In the owner, once the worker is gone: free the block and the queue."""
        self.free.close()
        self.free.join_thread()
        self.memory.close()
        self.memory.unlink()

    def pack(self, item, stop):
        """In the worker: the message for ``item`` (slot and layout, or the item itself)."""
        if not (isinstance(item, tuple) and all(isinstance(a, np.ndarray) for a in item)) \
                or sum(a.nbytes for a in item) > self.slot_bytes:
            return ("pickled", item)
        while not stop.is_set():
            try:
                slot = self.free.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                continue
        else:
            return None
        offset, layout = slot * self.slot_bytes, []
        for array in item:
            target = np.frombuffer(self.memory.buf, array.dtype, array.size, offset)
            target[...] = array.ravel()
            layout.append((array.dtype.str, array.shape, offset))
            offset += array.nbytes
        return ("slot", slot, layout)

    def unpack(self, message):
        """In the consumer: the arrays of a message, copied out; the slot is freed."""
        if message[0] == "pickled":
            return message[1]
        _, slot, layout = message
        arrays = tuple(np.frombuffer(self.memory.buf, dtype, int(np.prod(shape)), offset)
                       .reshape(shape).copy() for dtype, shape, offset in layout)
        self.free.put(slot)
        return arrays


def _produce_loop(produce, on_start, index, out, stop, slots):
    """The worker: produce batches into ``out`` until stopped or failed.

    A process (``slots`` given) flushes a failure into the pipe before it exits
    (the parent is waiting for it) but, when stopped, exits without waiting for
    anyone to read.
    """
    in_process = slots is not None
    try:
        if on_start is not None:
            on_start()
    except BaseException as exc:
        out.put(_Failure(_portable(exc) if in_process else exc))
        return
    while not stop.is_set():
        try:
            item = produce(index)
            if in_process:
                item = slots.pack(item, stop)
        except BaseException as exc:      # handed to the consumer, not lost
            item = _Failure(_portable(exc) if in_process else exc)
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        if isinstance(item, _Failure):
            return
        index += 1
    if in_process:
        out.cancel_join_thread()
        slots.memory.close()


class Prefetcher:
    """Produce batches ``first, first + 1, ...`` ahead of time in a daemon worker."""

    def __init__(self, produce, depth=4, first=0, name="prefetch", process=False,
                 on_start=None, slot_bytes=0):
        self.produce, self.depth, self.name = produce, max(0, int(depth)), name
        self.process, self.on_start, self.slot_bytes = bool(process), on_start, slot_bytes
        self._slots = None
        self._worker = None
        self.start(first)
        _live.add(self)

    def start(self, first):
        """(Re)start producing at batch ``first``; anything queued before is dropped."""
        self.close()
        self._next_index = first
        if not self.depth:
            return
        if self.process:
            context = _process_context()
            self._queue, self._stop = context.Queue(maxsize=self.depth), context.Event()
            self._slots = _SharedSlots(context, self.depth + 1, self.slot_bytes)
            make_worker = context.Process
        else:
            self._queue, self._stop = queue.Queue(maxsize=self.depth), threading.Event()
            make_worker = threading.Thread
        self._worker = make_worker(
            target=_produce_loop, name=self.name, daemon=True,
            args=(self.produce, self.on_start, first, self._queue, self._stop, self._slots))
        self._worker.start()

    def next(self):
        """The next batch, waiting for it; re-raises an exception of the worker."""
        if not self.depth:
            self._next_index += 1
            return self.produce(self._next_index - 1)
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self._worker.is_alive() and self._queue.empty():
                    raise RuntimeError(self._stopped_message()) from None
        if isinstance(item, _Failure):
            raise item.exc
        return self._slots.unpack(item) if self.process else item

    def _stopped_message(self):
        message = f"{self.name}: prefetch worker stopped"
        if self.process:
            message += (f" (exit code {self._worker.exitcode}); a worker process imports the "
                        f"main script again, so a script that reads encoded images must run "
                        f"its code under if __name__ == \"__main__\":")
        return message

    @property
    def running(self):
        return self._worker is not None and self._worker.is_alive()

    def close(self):
        """Stop the worker and wait for it; safe to call more than once."""
        if self._worker is None:
            return
        self._stop.set()
        self._worker.join(timeout=None if not self.process else 2.0)
        if self.process:
            if self._worker.is_alive():
                self._worker.terminate()
                self._worker.join()
            self._queue.close()
            self._slots.release()
        self._worker = None


@atexit.register
def _close_all():
    for prefetcher in list(_live):
        prefetcher.close()
