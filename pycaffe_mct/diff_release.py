"""Training with activation diffs released once used, as PyTorch frees gradients.

Caffe keeps every blob's diff after backward, and pycaffe users read them
(``net.blobs[name].diff``), so a net does too.  But in a training run no one
reads them: ``pycaffe_mct train --release-diffs`` and ``mct_train
--release-diffs`` turn this on for their nets.  Each activation's diff storage is given back to the OS
(``blob.release_pages``) as soon as the backward of the lowest layer that
produces it has run (the layers above it have written it and that layer has
read it), and each BatchNorm -> Scale chain's normalised copy (``fusion.py``)
once the chain's backward has read it; the next forward and backward write
them again.  The parameter gradients, the activations and the losses are the
same bits; what changes is that after a backward the activation diffs read as
zeros, and the step's peak memory: a ResNet-50 step at batch 32 holds only
the diffs between the layer being back-propagated and the ones that still
need them (docs/speed.md#memory).  Storage under ``blob.MAPPED_BYTES`` is
not released (it is not worth a system call).

It is not the default: the pages given back are faulted in again, zeroed,
every iteration, which made a ResNet-50 b8 step 23% slower (1591 -> 1952 ms)
for 40% less peak memory at b32 (6.55 -> 3.83 GiB).
"""
from collections import defaultdict


def add_release_diffs_flag(parser):
    """The training commands' ``--release-diffs`` flag."""
    parser.add_argument("--release-diffs", action="store_true",
                        help="give each activation diff back to the OS once backward has used "
                             "it: less memory (ResNet-50 b32: 3.8 instead of 6.6 GiB), a slower "
                             "step (+23%% at b8); the nets' blob diffs then read as zeros")


def release_diffs_once_used(net):
    """Install the release on ``net``'s backward (idempotent); returns ``net``."""
    if getattr(net, "_releases_diffs", False):
        return net
    dead_after = _storages_dead_after(net)
    net.add_backward_hook(lambda index: [storage.release() for storage in dead_after[index]])
    net._releases_diffs = True
    return net


def _storages_dead_after(net):
    """{layer index: storages no longer needed once that layer's backward has run}.

    A diff storage (shared by several blobs, e.g. Eltwise shortcut diffs, see
    ``diff_sharing.py``) is dead after the backward of the lowest layer producing
    any of its blobs; a layer that only writes its bottom in place produces nothing.
    """
    lowest = {}
    storages = {}
    for facts in net.layer_facts:
        for blob in facts.tops:
            if any(blob is bottom for bottom in facts.bottoms):
                continue
            storage = blob._diff
            storages[id(storage)] = storage
            lowest.setdefault(id(storage), facts.index)
    dead_after = defaultdict(list)
    for key, index in lowest.items():
        dead_after[index].append(storages[key])
    for chain in net._chains.values():
        dead_after[chain.first].append(chain.batch_norm.normalized._data)
    return dead_after
