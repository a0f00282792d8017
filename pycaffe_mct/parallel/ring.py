"""Allreduce of float32 gradient buffers: our ring, or MPI's own, behind one interface.

The ring (Patarasuk & Yuan's bandwidth-optimal schedule, as in Horovod and
NCCL) splits the buffer into N segments, one per rank.  In N-1 reduce-scatter
steps each rank sends one segment to its right neighbour and adds the one
arriving from its left, after which rank r holds the full sum of segment
r+1; N-1 allgather steps then pass the finished segments round the ring.
Each rank sends 2(N-1)/N of the buffer, whatever N is.  Every step is split
into pieces (at least ``PIECES_PER_STEP`` unless that would make them
smaller than ``MIN_PIECE_BYTES``) so that adding a piece overlaps with
receiving the next; ``pycaffe_mct.scaling`` models exactly this pipeline.

Both algorithms are non-blocking: ``start(buffer)`` returns a handle whose
``test()`` advances it without blocking and whose ``wait()`` finishes it.
The ring is progressed by its caller (the gradient buckets call ``test()``
after every layer's backward) rather than by a helper thread: MPI progress
threads spin, and on a machine with as many ranks as cores a spinning
thread steals the core that backward needs; this also keeps us within
MPI_THREAD_SINGLE semantics for these calls.
"""
import numpy as np

from ..errors import CaffeError
from .comm import mpi_module

PIECE_BYTES = 1 << 20        # the largest piece a ring step sends at once
PIECES_PER_STEP = 4          # fewer pieces leave the additions little to overlap
MIN_PIECE_BYTES = 64 << 10   # below this a message's start-up outweighs the overlap
_TAG_SPACE = 32768           # the MPI standard guarantees tags up to 32767


def as_flat_float32(buffer):
    """A 1-d view of a contiguous, writable float32 numpy array (reduced in place)."""
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.float32:
        raise TypeError(f"allreduce needs a float32 numpy array, got "
                        f"{getattr(buffer, 'dtype', type(buffer).__name__)}")
    if not buffer.flags.c_contiguous or not buffer.flags.writeable:
        raise ValueError("allreduce reduces in place: the array must be C-contiguous "
                         "and writable")
    return buffer.reshape(-1)


def ring_piece_bytes(segment_bytes, largest=PIECE_BYTES):
    """Bytes per piece for a ring step moving ``segment_bytes``: a few pieces per step,
    none larger than ``largest`` nor, where the segment allows, smaller than MIN_PIECE_BYTES."""
    return min(largest, max(MIN_PIECE_BYTES, segment_bytes / PIECES_PER_STEP))


def _split(count, parts):
    """Boundaries of ``parts`` near-equal ranges covering ``count`` elements."""
    return [count * k // parts for k in range(parts + 1)]


def _pieces(view, piece_elements):
    return [view[i:i + piece_elements] for i in range(0, view.size, piece_elements)]


class RingBroken(CaffeError):
    """A neighbour stopped answering in the middle of a ring allreduce."""


class RingHandle:
    """One allreduce in flight on a ring; ``test()`` to advance, ``wait()`` to finish."""

    def __init__(self, ring, flat, average, tag):
        self._ring, self._flat, self._average, self._tag = ring, flat, average, tag
        size, rank = ring.size, ring.rank
        bounds = _split(flat.size, size)
        self._segments = [flat[bounds[k]:bounds[k + 1]] for k in range(size)]
        reduce_steps = [((rank - s) % size, (rank - s - 1) % size, True)
                        for s in range(size - 1)]
        gather_steps = [((rank + 1 - s) % size, (rank - s) % size, False)
                        for s in range(size - 1)]
        self._steps = reduce_steps + gather_steps
        self._scratch = np.empty(bounds[1] + 1 if size > 1 else 0, dtype=np.float32)
        # From the buffer's size alone, so that sender and receiver cut alike.
        self._piece_elements = max(1, int(ring_piece_bytes(4 * bounds[1], ring.piece_bytes)) // 4)
        self._step = 0
        self._post_step()

    @property
    def done(self):
        return self._step == len(self._steps)

    def _post_step(self):
        if self.done:
            return
        ring = self._ring
        send_index, recv_index, reduce = self._steps[self._step]
        arriving = self._segments[recv_index]
        landing = self._scratch[:arriving.size] if reduce else arriving
        self._pending = list(zip(_pieces(arriving, self._piece_elements),
                                 _pieces(landing, self._piece_elements)))
        self._recvs = [ring.comm.Irecv(piece, source=ring.left, tag=self._tag)
                       for _, piece in self._pending]
        self._sends = [ring.comm.Isend(piece, dest=ring.right, tag=self._tag)
                       for piece in _pieces(self._segments[send_index], self._piece_elements)]
        self._reduce = reduce
        self._handled = [False] * len(self._recvs)

    def _consume(self, index):
        if self._reduce:
            target, piece = self._pending[index]
            np.add(target, piece, out=target)
        self._handled[index] = True

    def _finish_step(self, block):
        """Consume arrived pieces; True once this step's messages are all done.

        Blocking waits go piece by piece with ``Wait``: MPICH's ``Waitsome`` and
        ``Waitany`` wake up several times slower when ranks share cores.
        """
        request = self._ring.mpi.Request
        if block:
            for index, recv in enumerate(self._recvs):
                if not self._handled[index]:
                    recv.Wait()
                    self._consume(index)
            request.Waitall(self._sends)
            return True
        for index in request.Testsome(self._recvs) or []:
            self._consume(index)
        return all(self._handled) and request.Testall(self._sends)

    def _advance(self, block):
        while not self.done:
            try:
                finished = self._finish_step(block)
            except self._ring.mpi.Exception as exc:
                raise RingBroken(
                    f"rank {self._ring.rank}: ring allreduce step {self._step} with ranks "
                    f"{self._ring.left} and {self._ring.right} failed "
                    f"({exc.Get_error_string()}); has a rank died?") from exc
            if not finished:
                return False
            self._step += 1
            if self._step == self._ring.size - 1 and self._average:
                owned = self._segments[(self._ring.rank + 1) % self._ring.size]
                owned /= np.float32(self._ring.size)
            self._post_step()
        return True

    def test(self):
        """Advance as far as possible without blocking; True when finished."""
        return self._advance(block=False)

    def wait(self):
        """Block until the buffer holds the (averaged) sum over all ranks."""
        self._advance(block=True)
        return self._flat


class RingAllreduce:
    """Ring allreduce on a private duplicate of ``comm`` (creating one is collective)."""

    name = "ring"

    def __init__(self, comm, piece_bytes=PIECE_BYTES):
        self.mpi = mpi_module()
        self.comm = comm.Dup()
        self.size, self.rank = self.comm.Get_size(), self.comm.Get_rank()
        self.left, self.right = (self.rank - 1) % self.size, (self.rank + 1) % self.size
        self.piece_bytes = piece_bytes
        self._started = 0

    def start(self, buffer, average=False):
        """Begin summing ``buffer`` over all ranks in place (divided by N if ``average``).

        Every rank must start the same sequence of buffers with the same sizes.
        """
        flat = as_flat_float32(buffer)
        tag = self._started % _TAG_SPACE
        self._started += 1
        return RingHandle(self, flat, average, tag)

    def allreduce(self, buffer, average=False):
        return self.start(buffer, average).wait()

    def free(self):
        self.comm.Free()


class MPIHandle:
    """An MPI_Iallreduce in flight."""

    def __init__(self, request, flat, divisor):
        self._request, self._flat, self._divisor = request, flat, divisor
        self._finished = False

    def _finish(self):
        if not self._finished and self._divisor != 1:
            self._flat /= np.float32(self._divisor)
        self._finished = True

    def test(self):
        if not self._finished and self._request.Test():
            self._finish()
        return self._finished

    def wait(self):
        if not self._finished:
            self._request.Wait()
            self._finish()
        return self._flat


class MPIAllreduce:
    """MPI's own (non-blocking) Allreduce, on a private duplicate of ``comm``."""

    name = "mpi"

    def __init__(self, comm):
        self.mpi = mpi_module()
        self.comm = comm.Dup()
        self.size, self.rank = self.comm.Get_size(), self.comm.Get_rank()

    def start(self, buffer, average=False):
        flat = as_flat_float32(buffer)
        request = self.comm.Iallreduce(self.mpi.IN_PLACE, [flat, self.mpi.FLOAT], self.mpi.SUM)
        return MPIHandle(request, flat, self.size if average else 1)

    def allreduce(self, buffer, average=False):
        return self.start(buffer, average).wait()

    def free(self):
        self.comm.Free()


ALGORITHMS = {"ring": RingAllreduce, "mpi": MPIAllreduce}


def make_allreduce(comm, algorithm="ring"):
    """An allreduce for ``comm``: ``"ring"`` (ours) or ``"mpi"`` (MPI_Iallreduce)."""
    if algorithm not in ALGORITHMS:
        raise CaffeError(f"unknown allreduce algorithm '{algorithm}'; "
                         f"choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm](comm)
