"""``pycaffe_mct time`` and ``profile_net`` on LeNet."""
import io
from pathlib import Path

import lmdb
import pytest

from pycaffe_mct import cli
from pycaffe_mct.commands import profile, timing
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.solvers.log import GlogWriter

LENET = Path(__file__).resolve().parents[2] / "models" / "lenet"


def test_time_command_prints_caffe_lines_and_the_table(capsys):
    assert cli.main(["time", "--model", str(LENET / "lenet_deploy.prototxt"),
                     "--iterations", "2"]) == 0
    out, err = capsys.readouterr()
    for line in ("*** Benchmark begins ***", "Testing for 2 iterations.",
                 "Iteration: 2 forward-backward time:", "conv1\tforward:",
                 "Average Forward pass:", "Average Backward pass:",
                 "Average Forward-Backward:", "Total Time:", "*** Benchmark ends ***"):
        assert line in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:] if line.strip()}
    assert list(rows)[:3] == ["data", "conv1", "pool1"] and "TOTAL" in rows
    conv1 = rows["conv1"]
    # 64 x 20 x 24 x 24 outputs, 25 taps each: 2*MNK flops of the GEMM, one add for the bias.
    outputs = 64 * 20 * 24 * 24
    assert float(conv1[5]) == pytest.approx((2 * 25 + 1) * outputs / 1e9, abs=1e-4)
    assert 0 < float(conv1[7]) <= 64.0                        # LDM KB
    assert float(rows["TOTAL"][-1]) >= 1.0                    # imbalance


def test_data_layers_are_timed_as_inputs_of_the_given_shape():
    records = timing.time_net(LENET / "lenet_train_test.prototxt", iterations=1,
                              batch=4, data_shape=(1, 28, 28),
                              log=GlogWriter(stream=io.StringIO()))
    by_name = {r.name: r for r in records}
    assert by_name["digits"].type == "Input"
    assert by_name["conv1"].backward.flops > 0                # TRAIN: backward ran
    # ip2 forward: the GEMM (4 x 10 x 500) and the bias add.
    assert by_name["ip2"].forward.flops == 2 * 4 * 10 * 500 + 4 * 10


DATA_NET = """name: "tiny"
layer { name: "images" type: "Data" top: "data" top: "label"
        data_param { source: "%s" batch_size: 3 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_unknown_data_shape_names_the_layer(tmp_path, capsys):
    model = tmp_path / "net.prototxt"
    model.write_text(DATA_NET % (tmp_path / "missing_lmdb"))
    assert cli.main(["time", "--model", str(model), "--iterations", "1"]) == 1
    assert "layer 'images'" in capsys.readouterr().err


def test_data_shape_is_read_from_the_first_lmdb_record(tmp_path):
    source = tmp_path / "db"
    with lmdb.open(str(source), map_size=1 << 20) as env, env.begin(write=True) as txn:
        datum = caffe_pb2.Datum(channels=2, height=3, width=5, data=bytes(30), label=1)
        txn.put(b"0", datum.SerializeToString())
    model = tmp_path / "net.prototxt"
    model.write_text(DATA_NET % source)
    net = timing.build_timing_net(model)
    assert net.blobs["data"].shape == (3, 2, 3, 5) and net.blobs["label"].shape == (3,)


def test_profile_records_have_the_scaling_models_fields():
    net = timing.build_timing_net(LENET / "lenet_deploy.prototxt", batch=None)
    records = profile.profile_net(net, iterations=1)
    assert [r.name for r in records] == [layer.name for layer in net.layers]
    conv2 = records[3]
    assert conv2.cg_seconds > 0 and conv2.forward_ms > 0
    assert conv2.ldm_peak_bytes <= profile.CoreGroupSpec().ldm_bytes
    assert conv2.dma_in_bytes > 0 and conv2.dma_out_bytes > 0 and conv2.reg_comm_bytes > 0
    assert conv2.tiles_per_cpe >= 1 and conv2.imbalance >= 1.0
