"""Tests for the Caffe protobuf schema (protos/caffe.proto -> caffe_pb2)."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
from google.protobuf import descriptor_pb2, text_format
from grpc_tools import protoc  # the test extra: protoc, to compile caffe.proto afresh

from pycaffe_mct.proto import caffe_pb2 as pb, field_label

ROOT = Path(__file__).resolve().parents[1]

# (message, field, number, kind, default). kind: "opt", "rep" or "req".
# default: None = no explicit default; enum defaults are given by value name.
# Numbers and defaults are taken from BVLC Caffe's src/caffe/proto/caffe.proto.
FIELDS = [
    ("BlobShape", "dim", 1, "rep", None),
    ("BlobProto", "shape", 7, "opt", None),
    ("BlobProto", "data", 5, "rep", None),
    ("BlobProto", "diff", 6, "rep", None),
    ("BlobProto", "double_data", 8, "rep", None),
    ("BlobProto", "num", 1, "opt", 0),
    ("BlobProto", "width", 4, "opt", 0),
    ("Datum", "channels", 1, "opt", None),
    ("Datum", "height", 2, "opt", None),
    ("Datum", "width", 3, "opt", None),
    ("Datum", "data", 4, "opt", None),
    ("Datum", "label", 5, "opt", None),
    ("Datum", "float_data", 6, "rep", None),
    ("Datum", "encoded", 7, "opt", False),
    ("FillerParameter", "type", 1, "opt", "constant"),
    ("FillerParameter", "std", 6, "opt", 1.0),
    ("FillerParameter", "sparse", 7, "opt", -1),
    ("FillerParameter", "variance_norm", 8, "opt", "FAN_IN"),
    ("NetParameter", "layers", 2, "rep", None),
    ("NetParameter", "layer", 100, "rep", None),
    ("NetParameter", "input_dim", 4, "rep", None),
    ("NetParameter", "state", 6, "opt", None),
    ("LayerParameter", "name", 1, "opt", None),
    ("LayerParameter", "phase", 10, "opt", None),
    ("LayerParameter", "propagate_down", 11, "rep", None),
    ("LayerParameter", "transform_param", 100, "opt", None),
    ("LayerParameter", "loss_param", 101, "opt", None),
    ("LayerParameter", "convolution_param", 106, "opt", None),
    ("LayerParameter", "batch_norm_param", 139, "opt", None),
    ("LayerParameter", "input_param", 143, "opt", None),
    ("LayerParameter", "clip_param", 148, "opt", None),
    ("LayerParameter", "swish_param", 147, "opt", None),
    ("LayerParameter", "window_data_param", 129, "opt", None),
    ("ParamSpec", "lr_mult", 3, "opt", 1.0),
    ("ParamSpec", "decay_mult", 4, "opt", 1.0),
    ("NetState", "phase", 1, "opt", "TEST"),
    ("NetStateRule", "not_stage", 5, "rep", None),
    ("SolverParameter", "net", 24, "opt", None),
    ("SolverParameter", "type", 40, "opt", "SGD"),
    ("SolverParameter", "base_lr", 5, "opt", None),
    ("SolverParameter", "momentum2", 39, "opt", 0.999),
    ("SolverParameter", "delta", 31, "opt", 1e-8),
    ("SolverParameter", "rms_decay", 38, "opt", 0.99),
    ("SolverParameter", "clip_gradients", 35, "opt", -1.0),
    ("SolverParameter", "random_seed", 20, "opt", -1),
    ("SolverParameter", "solver_mode", 17, "opt", "GPU"),
    ("SolverParameter", "snapshot_format", 37, "opt", "BINARYPROTO"),
    ("SolverParameter", "weights", 42, "rep", None),
    ("SolverState", "iter", 1, "opt", None),
    ("SolverState", "history", 3, "rep", None),
    ("SolverState", "current_step", 4, "opt", 0),
    ("TransformationParameter", "scale", 1, "opt", 1.0),
    ("TransformationParameter", "mean_value", 5, "rep", None),
    ("LossParameter", "normalization", 3, "opt", "VALID"),
    ("ConvolutionParameter", "bias_term", 2, "opt", True),
    ("ConvolutionParameter", "stride", 6, "rep", None),
    ("ConvolutionParameter", "dilation", 18, "rep", None),
    ("ConvolutionParameter", "group", 5, "opt", 1),
    ("PoolingParameter", "pool", 1, "opt", "MAX"),
    ("PoolingParameter", "stride", 3, "opt", 1),
    ("PoolingParameter", "round_mode", 13, "opt", "CEIL"),
    ("LRNParameter", "beta", 3, "opt", 0.75),
    ("BatchNormParameter", "moving_average_fraction", 2, "opt", 0.999),
    ("BatchNormParameter", "eps", 3, "opt", 1e-5),
    ("DataParameter", "backend", 8, "opt", "LEVELDB"),
    ("DataParameter", "prefetch", 10, "opt", 4),
    ("ClipParameter", "min", 1, "req", None),
    ("V1LayerParameter", "type", 5, "opt", None),
    ("V1LayerParameter", "param", 1001, "rep", None),
    ("V1LayerParameter", "layer", 1, "opt", None),
    ("V0LayerParameter", "hdf5_output_param", 1001, "opt", None),
]


@pytest.mark.parametrize("message,field,number,kind,default", FIELDS,
                         ids=["%s.%s" % f[:2] for f in FIELDS])
def test_field_number_and_default(message, field, number, kind, default):
    fd = getattr(pb, message).DESCRIPTOR.fields_by_name[field]
    assert fd.number == number
    assert field_label(fd) == {"rep": "repeated", "req": "required"}.get(kind, "optional")
    if default is None:
        assert not fd.has_default_value
    elif fd.type == fd.TYPE_ENUM:
        assert fd.enum_type.values_by_number[fd.default_value].name == default
    elif isinstance(default, float):
        assert fd.default_value == pytest.approx(default, rel=1e-6)
    else:
        assert fd.default_value == default


def test_enums_and_packing():
    assert pb.TRAIN == 0 and pb.TEST == 1
    assert pb.V1LayerParameter.CONVOLUTION == 4
    assert pb.V1LayerParameter.DECONVOLUTION == 39
    assert pb.V1LayerParameter.ABSVAL == 35
    assert pb.SolverParameter.ADAM == 5
    assert pb.ReductionParameter.SUM == 1
    assert pb.HingeLossParameter.L1 == 1
    # Packing as written on the wire: one length-delimited record, or one tag per value.
    assert pb.BlobProto(data=[1, 2]).SerializeToString()[:2] == bytes([5 << 3 | 2, 8])
    assert pb.BlobShape(dim=[3, 4]).SerializeToString() == bytes([1 << 3 | 2, 2, 3, 4])
    assert pb.Datum(float_data=[1, 2]).SerializeToString().count(bytes([6 << 3 | 5])) == 2
    assert pb.DESCRIPTOR.package == "caffe"
    assert pb.DESCRIPTOR.name == "caffe.proto"


def test_own_fields_stay_in_reserved_range():
    # pycaffe_mct's additions must use 5000-5999; Caffe's stay far below.
    for name, msg in pb.DESCRIPTOR.message_types_by_name.items():
        for fd in msg.fields:
            assert fd.number < 1100 or 5000 <= fd.number <= 5999, (
                "%s.%s = %d" % (name, fd.name, fd.number))


# ---- golden files written by BVLC Caffe ----

def _parse(cls, data):
    msg = cls()
    msg.ParseFromString(data)
    return msg


def test_caffemodel(fixtures_dir):
    data = (fixtures_dir / "small_adam_iter_10.caffemodel").read_bytes()
    net = _parse(pb.NetParameter, data)
    assert net.name == "SmallNet"
    assert len(net.layers) == 0
    assert [l.name for l in net.layer] == [
        "data", "conv1", "bn1", "scale1", "relu1", "pool1", "norm1", "ip",
        "loss"]
    shapes = {l.name: [list(b.shape.dim) for b in l.blobs] for l in net.layer}
    assert shapes["conv1"] == [[8, 3, 3, 3], [8]]
    assert shapes["bn1"] == [[8], [8], [1]]
    assert shapes["scale1"] == [[8], [8]]
    assert shapes["ip"] == [[3, 960], [3]]
    assert shapes["relu1"] == []
    conv1 = net.layer[1]
    assert conv1.type == "Convolution"
    assert len(conv1.blobs[0].data) == 8 * 3 * 3 * 3
    assert [p.lr_mult for p in conv1.param] == [1, 2]
    assert conv1.phase == pb.TRAIN
    assert net.SerializeToString() == data


def test_solverstate(fixtures_dir):
    data = (fixtures_dir / "small_adam_iter_10.solverstate").read_bytes()
    state = _parse(pb.SolverState, data)
    assert state.iter == 10
    assert state.learned_net == "small_adam_iter_10.caffemodel"
    # Adam: first moments of the 9 learnable blobs, then second moments.
    assert len(state.history) == 18
    assert list(state.history[0].shape.dim) == [8, 3, 3, 3]
    assert list(state.history[9].shape.dim) == [8, 3, 3, 3]
    assert state.current_step == 0
    assert state.SerializeToString() == data


def test_mean_binaryproto(fixtures_dir):
    data = (fixtures_dir / "mean_resized.binaryproto").read_bytes()
    mean = _parse(pb.BlobProto, data)
    # compute_image_mean writes the legacy 4-D fields, not `shape`.
    assert not mean.HasField("shape")
    assert (mean.num, mean.channels, mean.height, mean.width) == (1, 3, 24, 20)
    assert len(mean.data) == 3 * 24 * 20
    plane = 24 * 20
    means = [sum(mean.data[c * plane:(c + 1) * plane]) / plane
             for c in range(3)]
    assert means == pytest.approx([128.101, 115.383, 126.741], abs=1e-3)
    assert mean.SerializeToString() == data


def test_lmdb_datum(fixtures_dir):
    env = lmdb.open(str(fixtures_dir / "raw_lmdb"), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            assert txn.stat()["entries"] == 12
            key, value = next(iter(txn.cursor()))
    finally:
        env.close()
    assert key == b"00000000_sub/pic_00.jpg"
    datum = _parse(pb.Datum, value)
    assert datum.channels == 3
    assert (datum.height, datum.width) == (24, 54)
    assert datum.label == 0
    assert not datum.encoded
    assert len(datum.data) == datum.channels * datum.height * datum.width
    assert datum.SerializeToString() == value


def test_prototxt_files_parse(fixtures_dir):
    net = text_format.Parse(
        (fixtures_dir / "small_train.prototxt").read_text(), pb.NetParameter())
    assert net.name == "SmallNet"
    assert [l.type for l in net.layer] == [
        "Data", "Convolution", "BatchNorm", "Scale", "ReLU", "Pooling", "LRN",
        "InnerProduct", "SoftmaxWithLoss"]
    data = net.layer[0]
    assert data.include[0].phase == pb.TRAIN
    assert list(data.transform_param.mean_value) == [104, 117, 123]
    assert data.data_param.backend == pb.DataParameter.LMDB
    assert data.data_param.batch_size == 4
    conv = net.layer[1].convolution_param
    assert conv.num_output == 8 and list(conv.kernel_size) == [3]
    assert conv.bias_term  # default
    assert conv.weight_filler.type == "xavier"
    assert net.layer[3].scale_param.bias_term
    assert net.layer[5].pooling_param.pool == pb.PoolingParameter.MAX
    assert net.layer[6].lrn_param.alpha == pytest.approx(1e-4)

    solver = text_format.Parse(
        (fixtures_dir / "small_solver.prototxt").read_text(),
        pb.SolverParameter())
    assert solver.net == "small_train.prototxt"
    assert solver.type == "Adam"
    assert solver.base_lr == pytest.approx(0.001)
    assert solver.max_iter == 10 and solver.random_seed == 7
    assert solver.weight_decay == pytest.approx(5e-4)
    assert solver.delta == pytest.approx(1e-8)

    deploy = text_format.Parse(
        (fixtures_dir / "small_deploy.prototxt").read_text(),
        pb.NetParameter())
    assert deploy.layer[0].type == "Input"
    assert list(deploy.layer[0].input_param.shape[0].dim) == [4, 3, 24, 20]


# ---- generated code and packaging ----

def _normalize(messages):
    """Drop what differs only in spelling between protoc and the runtime.

    protoc's descriptor sets carry json_name (derived from the field name),
    the descriptor rebuilt by CopyToProto does not; and CopyToProto re-prints
    float defaults from their float32 value ("0.999000013" for "0.999").
    """
    for msg in messages:
        for fd in msg.field:
            fd.ClearField("json_name")
            if fd.HasField("default_value") and fd.type == fd.TYPE_FLOAT:
                as_f32 = struct.pack("<f", float(fd.default_value))
                fd.default_value = repr(struct.unpack("<f", as_f32)[0])
            elif fd.HasField("default_value") and fd.type == fd.TYPE_DOUBLE:
                fd.default_value = repr(float(fd.default_value))
        _normalize(msg.nested_type)


def test_generated_module_matches_proto(tmp_path):
    out = tmp_path / "caffe.desc"
    rc = protoc.main(["protoc", "-I%s" % (ROOT / "protos"),
                      "--descriptor_set_out=%s" % out,
                      str(ROOT / "protos" / "caffe.proto")])
    assert rc == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert len(fresh.file) == 1
    expected = fresh.file[0]
    committed = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(committed)
    for fdp in (expected, committed):
        fdp.ClearField("source_code_info")
        _normalize(fdp.message_type)
    assert committed == expected, (
        "pycaffe_mct/proto/caffe_pb2.py is out of date with protos/caffe.proto;"
        " run: python tools/compile_proto.py")


def test_incompatible_runtime_gives_clear_error():
    # Pretend the runtime is older than the supported range and import in a
    # fresh interpreter: the package must raise an ImportError naming the range.
    code = (
        "import google.protobuf\n"
        "google.protobuf.__version__ = '3.19.6'\n"
        "try:\n"
        "    import pycaffe_mct.proto\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('NO ERROR')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    env.pop("TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, cwd=str(ROOT), timeout=120)
    assert res.returncode == 0, res.stderr
    from pycaffe_mct.proto import PROTOBUF_REQUIREMENT
    assert PROTOBUF_REQUIREMENT in res.stdout
    assert "3.19.6" in res.stdout
    assert "NO ERROR" not in res.stdout
