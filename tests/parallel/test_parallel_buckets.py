"""Gradient buckets: fusion by size, backward order, shared parameters, write-back, iter_size."""
import numpy as np
import pytest

from pycaffe_mct import Net
from pycaffe_mct.parallel.buckets import GradientSync, make_buckets
from pycaffe_mct.proto import caffe_pb2
from google.protobuf import text_format

# ip2 shares ip1's weights, so their gradient is final only after ip1's backward.
NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 4 } shape { dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { name: "shared" } inner_product_param { num_output: 4 bias_term: false
        weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { name: "shared" } inner_product_param { num_output: 4 bias_term: false } }
layer { name: "ip3" type: "InnerProduct" bottom: "ip2" top: "ip3"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip3" bottom: "label" top: "loss" }
"""


def make_net():
    net = Net(text_format.Parse(NET, caffe_pb2.NetParameter()), caffe_pb2.TRAIN)
    net.blobs["data"].data[...] = np.random.default_rng(0).standard_normal((2, 4))
    net.blobs["label"].data[...] = [0, 2]
    return net


class RecordingAllreduce:
    """Stands in for MPI: logs each start and, on wait, adds 1 (to see the write-back)."""

    name = "recording"

    def __init__(self, events):
        self.events = events

    def start(self, flat, average=False):
        self.events.append(("start", flat.size))
        return RecordingHandle(flat)


class RecordingHandle:
    def __init__(self, flat):
        self.flat = flat

    def test(self):
        return False

    def wait(self):
        self.flat += 1
        return self.flat


def test_shared_param_is_final_at_its_lowest_layer():
    net = make_net()
    # learnable params: shared weight (layers 1 and 2), ip3 weight, ip3 bias
    assert [learnable.layer_index for learnable in net.learnables] == [1, 3, 3]
    assert [[p.learnable for p in facts.params] for facts in net.layer_facts[1:3]] == \
        [[net.learnables[0]], [net.learnables[0]]]


def test_buckets_follow_backward_order_and_size_threshold():
    net = make_net()
    small = make_buckets(net, bucket_bytes=4)
    assert [b.ready_after_layer for b in small] == [3, 3, 1]
    assert [[blob.count for blob in b.blobs] for b in small] == [[12], [3], [16]]
    fused = make_buckets(net, bucket_bytes=(12 + 3) * 4)
    assert [[blob.count for blob in b.blobs] for b in fused] == [[12, 3], [16]]


@pytest.mark.parametrize("iter_size", [1, 2])
def test_each_bucket_starts_right_after_its_layers_backward(iter_size):
    net = make_net()
    events = []
    net.add_backward_hook(lambda index: events.append(("layer", index)))
    sync = GradientSync(net, RecordingAllreduce(events), iter_size=iter_size, bucket_bytes=4)
    for _ in range(iter_size):
        net.forward_backward()
    last_pass = events[len(events) - 8:] if iter_size > 1 else events
    assert all(kind == "layer" for kind, _ in events[:len(events) - 8])
    assert last_pass == [("layer", 4), ("layer", 3), ("start", 12), ("start", 3),
                         ("layer", 2), ("layer", 1), ("start", 16), ("layer", 0)]
    before = [blob.diff.copy() for blob in net.learnable_params]
    sync.finish()
    for old, blob in zip(before, net.learnable_params):
        np.testing.assert_array_equal(blob.diff, old + 1)


def test_finish_starts_buckets_backward_never_reached():
    net = make_net()
    events = []
    sync = GradientSync(net, RecordingAllreduce(events), bucket_bytes=4)
    net.forward_prefilled()
    net.backward_from_to(len(net.layers) - 1, 2)      # stops above ip1: its bucket waits
    assert events == [("start", 12), ("start", 3)]
    sync.finish()
    assert events[-1] == ("start", 16)
