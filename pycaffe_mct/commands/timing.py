"""``pycaffe_mct time``: Caffe's ``caffe time`` plus the modelled core-group cost.

    pycaffe_mct time --model NET.prototxt [--iterations 50] [--phase TRAIN|TEST]
                     [--batch B] [--data-shape C,H,W]

Logs Caffe's lines (``Average Forward pass: ... ms.`` etc.), then a table with,
per layer, forward and backward host ms and the modelled SW26010 core-group ms,
GFLOP, DMA MB, LDM peak, tiles per CPE and CPE imbalance of one iteration.

Nets with data-reading layers (Data, ImageData, HDF5Data, MemoryData,
WindowData) are timed without their sources: each is replaced by an Input
layer of the same shape holding random data (labels 0).  The batch is the
layer's ``batch_size`` (``--batch`` overrides it); the image shape comes from
``--data-shape C,H,W``, or else from the first record of an LMDB source, with
``crop_size`` applied.  ``time_net`` is the same from Python.
"""
import argparse
import sys
import os

import numpy as np

from .. import net_passes
from ..data.lmdb_io import check_lmdb_file
from ..errors import CaffeError, layer_error
from ..layer import TEST, TRAIN
from ..net import Net, _make_state, load_net_param
from ..proto import caffe_pb2
from ..solvers.log import GlogWriter
from .profile import profile_net

DATA_LAYERS = {
    "Data": "data_param",
    "ImageData": "image_data_param",
    "HDF5Data": "hdf5_data_param",
    "MemoryData": "memory_data_param",
    "WindowData": "window_data_param",
}


def _lmdb_image_shape(layer):
    """(C, H, W) of the first Datum in an LMDB Data source, or None if unreadable."""
    source = layer.data_param.source
    if layer.data_param.backend != caffe_pb2.DataParameter.LMDB or not source:
        return None
    if os.path.exists(source):
        check_lmdb_file(source)         # a damaged file is an error, not a SIGBUS
    try:
        import lmdb
        with lmdb.open(source, readonly=True, lock=False, subdir=True) as env:
            with env.begin() as txn:
                first = next(iter(txn.cursor()), None)
    except (ImportError, lmdb.Error):
        return None
    if first is None:
        return None
    datum = caffe_pb2.Datum.FromString(first[1])
    return (datum.channels, datum.height, datum.width)


def _image_shape(layer, data_shape):
    """The (C, H, W) a data layer would produce, after cropping."""
    shape = data_shape
    if shape is None and layer.type == "Data":
        shape = _lmdb_image_shape(layer)
    if shape is None and layer.type == "MemoryData":
        p = layer.memory_data_param
        shape = (p.channels, p.height, p.width)
    if shape is None and layer.type == "ImageData" and layer.image_data_param.new_height:
        p = layer.image_data_param
        shape = (3 if p.is_color else 1, p.new_height, p.new_width)
    if shape is None:
        raise layer_error(layer, "cannot tell the shape of its images for timing; "
                                 "give --data-shape C,H,W")
    crop = layer.transform_param.crop_size
    return (shape[0], crop, crop) if crop else tuple(shape)


def replace_data_layers(net_param, batch=None, data_shape=None):
    """A copy of ``net_param`` with every data-reading layer turned into an Input layer."""
    result = caffe_pb2.NetParameter()
    result.CopyFrom(net_param)
    for layer in result.layer:
        field = DATA_LAYERS.get(layer.type)
        if field is None:
            continue
        size = batch or getattr(getattr(layer, field), "batch_size", 0)
        if not size:
            raise layer_error(layer, "has no batch_size; give --batch")
        shapes = [(size,) + _image_shape(layer, data_shape)] + [(size,)] * (len(layer.top) - 1)
        replacement = caffe_pb2.LayerParameter(name=layer.name, type="Input", top=layer.top)
        for shape in shapes:
            replacement.input_param.shape.add(dim=shape)
        layer.CopyFrom(replacement)
    return result


def build_timing_net(model, phase=TRAIN, batch=None, data_shape=None):
    """The net ``model`` in ``phase``, data layers replaced, inputs filled with random data."""
    net_param, source = load_net_param(model)
    state = _make_state(phase, None, None, net_param.state)
    filtered = net_passes.filter_by_state(net_passes.upgrade(net_param, source), state)
    net = Net(replace_data_layers(filtered, batch, data_shape), state=state)
    rng = np.random.default_rng(0)
    for facts in net.layer_facts:
        tops = facts.tops
        if facts.layer.type == "Input" and tops:
            tops[0].data[...] = rng.random(tops[0].shape, dtype=np.float32)
            for label in tops[1:]:
                label.data[...] = 0
    return net


def time_net(model, iterations=50, phase=TRAIN, batch=None, data_shape=None, log=None):
    """Time ``model`` as ``caffe time`` does; returns the per-layer ``LayerProfile`` records."""
    log = log or GlogWriter()
    net = build_timing_net(model, phase, batch, data_shape)
    log.info("*** Benchmark begins ***", "caffe.cpp:365")
    log.info(f"Testing for {iterations} iterations.", "caffe.cpp:366")
    passes = []

    def on_iteration(j, seconds):
        passes.append(seconds * 1000)
        log.info(f"Iteration: {j + 1} forward-backward time: {passes[-1]:g} ms.",
                 "caffe.cpp:394")
    records = profile_net(net, iterations, on_iteration)
    log.info("Average time per layer: ", "caffe.cpp:397")
    for r in records:
        log.info(f"{r.name:>10}\tforward: {r.forward_ms:g} ms.", "caffe.cpp:400")
        log.info(f"{r.name:>10}\tbackward: {r.backward_ms:g} ms.", "caffe.cpp:403")
    forward = sum(r.forward_ms for r in records)
    backward = sum(r.backward_ms for r in records)
    log.info(f"Average Forward pass: {forward:g} ms.", "caffe.cpp:408")
    log.info(f"Average Backward pass: {backward:g} ms.", "caffe.cpp:410")
    log.info(f"Average Forward-Backward: {sum(passes) / iterations:g} ms.", "caffe.cpp:412")
    log.info(f"Total Time: {sum(passes):g} ms.", "caffe.cpp:414")
    log.info("*** Benchmark ends ***", "caffe.cpp:415")
    return records


COLUMNS = ("layer", "type", "fwd ms", "bwd ms", "CG ms", "GFLOP", "DMA MB", "LDM KB",
           "tiles/CPE", "imbal")


def _row(name, kind, fwd, bwd, cg, flops, dma, ldm, tiles, imbalance):
    return (name, kind, f"{fwd:.3f}", f"{bwd:.3f}", f"{cg * 1e3:.3f}", f"{flops / 1e9:.4f}",
            f"{dma / 1e6:.3f}", f"{ldm / 1024:.1f}", str(tiles), f"{imbalance:.2f}")


def format_table(records):
    """The per-layer table with a TOTAL row (imbalance weighted by modelled time)."""
    rows = [_row(r.name, r.type, r.forward_ms, r.backward_ms, r.cg_seconds, r.flops,
                 r.dma_in_bytes + r.dma_out_bytes, r.ldm_peak_bytes, r.tiles_per_cpe,
                 r.imbalance) for r in records]
    cg = sum(r.cg_seconds for r in records)
    weighted = sum(r.imbalance * r.cg_seconds for r in records)
    rows.append(_row("TOTAL", "", sum(r.forward_ms for r in records),
                     sum(r.backward_ms for r in records), cg, sum(r.flops for r in records),
                     sum(r.dma_in_bytes + r.dma_out_bytes for r in records),
                     max((r.ldm_peak_bytes for r in records), default=0),
                     sum(r.tiles_per_cpe for r in records), weighted / cg if cg else 1.0))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "-" * len(line(COLUMNS))
    return "\n".join([line(COLUMNS), rule] + [line(r) for r in rows[:-1]]
                     + [rule, line(rows[-1])])


def _shape_flag(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers), "
                                         f"got {text!r}")
    return shape


def _parser():
    parser = argparse.ArgumentParser(
        prog="pycaffe_mct time",
        description="Caffe's 'caffe time' (average forward and backward milliseconds), plus "
                    "each layer's modelled core-group cost.")
    parser.add_argument("--model", required=True, help="net prototxt")
    parser.add_argument("--iterations", type=int, default=50, help="passes to average (50)")
    parser.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN",
                        help="the net state to build (TRAIN)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of data layers (default: their batch_size)")
    parser.add_argument("--data-shape", type=_shape_flag, default=None,
                        help="C,H,W of data layers whose source cannot tell it")
    return parser


def time_main(argv=None):
    """Entry point of ``pycaffe_mct time``; returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.iterations <= 0:
        raise CaffeError(f"--iterations must be positive, got {args.iterations}")
    phase = TRAIN if args.phase == "TRAIN" else TEST
    records = time_net(args.model, args.iterations, phase, args.batch, args.data_shape)
    print(f"Modelled SW26010 core group, per iteration ({args.model}, {args.phase}):")
    print(format_table(records))
    return 0
