"""Gradient buckets: fuse parameter gradients into a few buffers and reduce each early.

Backward runs from the last layer to the first, so the gradients of the top
layers are final long before the bottom layers finish.  The learnable
parameters are grouped, in that order, into buckets of at most
``bucket_bytes`` (one parameter larger than that gets a bucket of its own).
A net backward hook, called after each layer, starts the allreduce of every
bucket whose parameters are all final and advances the ones in flight, so
communication overlaps the rest of backward; ``finish()`` (from the solver's
gradients-ready callback) completes them and copies the averaged sums back.

With ``iter_size`` > 1 the gradients accumulate over several backward passes,
so only the last pass of an iteration starts the reductions.
"""
import numpy as np

DEFAULT_BUCKET_BYTES = 1 << 20      # small enough that LeNet-sized nets get several buckets


class Bucket:
    """Some parameters' gradients, copied into one flat float32 buffer."""

    def __init__(self, blobs, ready_after_layer):
        self.blobs = blobs
        self.ready_after_layer = ready_after_layer
        self.flat = np.empty(sum(blob.count for blob in blobs), dtype=np.float32)
        self.handle = None

    def start(self, allreduce):
        offset = 0
        for blob in self.blobs:
            self.flat[offset:offset + blob.count] = blob.diff.ravel()
            offset += blob.count
        self.handle = allreduce.start(self.flat, average=True)

    def finish(self):
        self.handle.wait()
        self.handle = None
        offset = 0
        for blob in self.blobs:
            blob.diff[...] = self.flat[offset:offset + blob.count].reshape(blob.diff.shape)
            offset += blob.count


def make_buckets(net, bucket_bytes=DEFAULT_BUCKET_BYTES):
    """Buckets in the order backward completes them (top layers first).

    A parameter's gradient is final after the backward of its owner layer: the
    lowest layer using it, as layers sharing it come later in the net.
    """
    learnables = net.learnables
    order = sorted(range(len(learnables)), key=lambda i: (-learnables[i].layer_index, i))
    buckets, current, current_bytes = [], [], 0
    for index in order:
        nbytes = learnables[index].blob.count * 4
        if current and current_bytes + nbytes > bucket_bytes:
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += nbytes
    if current:
        buckets.append(current)
    return [Bucket([learnables[i].blob for i in indices],
                   min(learnables[i].layer_index for i in indices))
            for indices in buckets]


class GradientSync:
    """Averages a net's parameter gradients over all ranks, overlapping backward."""

    def __init__(self, net, allreduce, iter_size=1, bucket_bytes=DEFAULT_BUCKET_BYTES):
        self.allreduce = allreduce
        self.iter_size = int(iter_size)
        self.buckets = make_buckets(net, bucket_bytes)
        self._passes_done = 0
        self._waiting = list(self.buckets)
        net.add_backward_hook(self._after_layer_backward)

    def _after_layer_backward(self, layer_index):
        if self._passes_done == self.iter_size - 1:
            while self._waiting and self._waiting[0].ready_after_layer >= layer_index:
                self._waiting.pop(0).start(self.allreduce)
            for bucket in self.buckets:
                if bucket.handle is not None:
                    bucket.handle.test()
        if layer_index == 0:
            self._passes_done += 1

    def finish(self):
        """Start whatever backward did not, wait for all, write the averages back."""
        for bucket in self._waiting:
            bucket.start(self.allreduce)
        for bucket in self.buckets:
            bucket.finish()
        self._passes_done = 0
        self._waiting = list(self.buckets)
