"""Training without keeping activation diffs: they share storage, as PyTorch frees gradients.

Caffe keeps every blob's diff after backward, and pycaffe users read them
(``net.blobs[name].diff``), so a net does too.  In a training run no one reads
them, and the training commands (``pycaffe_mct train``, ``mct_train``) let them
go unless given ``--keep-diffs``: an activation's diff is only needed during
backward, from the backward of the highest layer that writes it (a consumer of
the blob) down to that of the lowest layer producing it, which reads it last.
Diffs whose spans do not overlap share one array (a greedy colouring of the
spans, sized for the largest member), so a ResNet-50 step needs three arrays
where it kept a diff per blob.  Nothing is freed and nothing faults in again,
so the step is as fast; the losses, activations and parameter gradients are
the same bits.  What changes: after a step the blobs' diffs hold whatever the
last user of their array wrote, not Caffe's values.  This relies on every
layer's backward overwriting the bottom diffs it writes, as Caffe's layers do;
the gradient checker holds every layer type to it (``gradient_check.STALE_DIFF``).

Left alone: storage smaller than ``blob.MAPPED_BYTES`` (not worth it), diffs
that no backward writes (read as zeros by their producer, as in Caffe), and
diffs written by the top layer (a loss layer's bottom, small).
"""
from . import blob as blob_module


def add_release_diffs_flag(parser):
    """The training commands' ``--keep-diffs`` flag (``--release-diffs``, the default, is
    still taken)."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--keep-diffs", dest="release_diffs", action="store_false",
                        help="keep every activation diff after backward, as Caffe does (by "
                             "default blobs whose diffs are needed at different times share "
                             "storage: ResNet-50 b32 3.9 instead of 6.4 GiB, as fast)")
    choice.add_argument("--release-diffs", dest="release_diffs", action="store_true",
                        help="share activation diff storage (the default)")
    parser.set_defaults(release_diffs=True)


def release_diffs_once_used(net):
    """Let ``net``'s activation diffs share storage (idempotent); returns ``net``."""
    if getattr(net, "_releases_diffs", False):
        return net
    for array_size, storages in _colours(_spans(net)):
        shared = blob_module.zeroed_storage(array_size)
        for storage in storages:
            storage.array = shared
    net._releases_diffs = True
    return net


class _Span:
    """When a diff storage is needed: during the backward of layers ``low..high``."""

    def __init__(self, storage, producer):
        self.storage, self.low, self.high, self.count = storage, producer, None, 0


def _spans(net):
    """The spans of the diff storages worth sharing, keyed by storage id."""
    spans = {}
    for facts in net.layer_facts:
        for top in facts.tops:
            if not any(top is bottom for bottom in facts.bottoms):      # not in place
                span = spans.setdefault(id(top._diff), _Span(top._diff, facts.index))
                span.count = max(span.count, top.count)
    for facts in net.layer_facts:
        for bottom, written in zip(facts.bottoms, facts.bottom_need_backward):
            span = spans.get(id(bottom._diff))
            if span is not None and written:
                span.high = max(span.high if span.high is not None else -1, facts.index)
    top_layer = len(net.layer_facts) - 1
    return [span for span in spans.values()
            if span.high is not None and span.high < top_layer
            and span.count * 4 >= blob_module.MAPPED_BYTES]


def _colours(spans):
    """[(array size, storages)]: spans taken from the top of the net down, each joining the
    smallest colour large enough whose members are all done above it (else the largest free
    one, grown, else a new colour)."""
    colours = []                                   # [lowest layer so far, size, storages]
    for span in sorted(spans, key=lambda s: -s.high):
        free = [c for c in colours if c[0] > span.high]
        fitting = [c for c in free if c[1] >= span.count]
        colour = (min(fitting, key=lambda c: c[1]) if fitting
                  else max(free, key=lambda c: c[1]) if free else None)
        if colour is None:
            colour = [span.low, 0, []]
            colours.append(colour)
        colour[0] = span.low
        colour[1] = max(colour[1], span.count)
        colour[2].append(span.storage)
    return [(size, storages) for _, size, storages in colours]
