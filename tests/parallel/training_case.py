"""A tiny training job on disk (LMDB, net, solver) for the data-parallel tests."""
from pathlib import Path

import lmdb
import numpy as np

from pycaffe_mct.proto import caffe_pb2

RECORDS = 64

NET = """name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  data_param {{ source: "{source}" backend: LMDB batch_size: {batch} }}
  transform_param {{ scale: 0.00390625 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 8 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """net: "{net}"
base_lr: 0.2 momentum: 0.9 weight_decay: 0.001 lr_policy: "fixed"
max_iter: {max_iter} display: {display} iter_size: {iter_size} random_seed: 7
snapshot: {snapshot} snapshot_prefix: "{prefix}"
"""


def write_lmdb(path, records=RECORDS):
    """Records of 1x4x4 uint8 pixels whose label (0..2) depends on their brightness."""
    generator = np.random.default_rng(3)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for index in range(records):
            label = index % 3
            pixels = generator.integers(0, 256, (1, 4, 4)) // (label + 1)
            datum = caffe_pb2.Datum(channels=1, height=4, width=4, label=label,
                                    data=pixels.astype(np.uint8).tobytes())
            txn.put(f"{index:08d}".encode(), datum.SerializeToString())
    env.close()


def write_job(directory, name, batch, max_iter, iter_size=1, snapshot=0, display=1):
    """Net + solver files for one run; returns the solver path."""
    directory = Path(directory)
    source = directory / "train_lmdb"
    if not source.exists():
        write_lmdb(source)
    net = directory / f"{name}_net.prototxt"
    net.write_text(NET.format(source=source, batch=batch))
    solver = directory / f"{name}_solver.prototxt"
    solver.write_text(SOLVER.format(net=net, max_iter=max_iter, iter_size=iter_size,
                                    snapshot=snapshot, prefix=directory / name,
                                    display=display))
    return solver


def read_weights(caffemodel):
    """{layer name: [arrays]} of a .caffemodel."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(Path(caffemodel).read_bytes())
    return {layer.name: [np.array(blob.data, np.float32) for blob in layer.blobs]
            for layer in net.layer if layer.blobs}
