"""The shipped MCT configurations load, and the generated ResNet-50 nets are current."""
from pathlib import Path

import pytest
from google.protobuf import text_format

from pycaffe_mct.mct.trainer import CALIBRATE, PRETRAIN, PRIMARY, MCTConfig
from pycaffe_mct.net_passes import filter_by_state, insert_splits
from pycaffe_mct.proto import caffe_pb2
from model_helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dataset", ["clothing1m", "webvision"])
@pytest.mark.parametrize("role", ["aux", "primary"])
def test_generated_resnet_nets_are_current_and_wire_in_every_stage(dataset, role):
    net = load_tool("make_mct_nets").mct_net(role, dataset)
    written = (ROOT / f"models/mct_{dataset}/{role}_train_val.prototxt").read_text()
    assert written.split("\n", 1)[1] == text_format.MessageToString(net), \
        "run python tools/make_mct_nets.py"
    for phase, stage in ((caffe_pb2.TRAIN, PRETRAIN), (caffe_pb2.TRAIN, CALIBRATE),
                         (caffe_pb2.TEST, None)):
        state = caffe_pb2.NetState(phase=phase, stage=[stage] if stage else [])
        insert_splits(filter_by_state(net, state))      # raises on a dangling bottom


@pytest.mark.parametrize("solver", ["models/mct_digits/solver.prototxt",
                                    "models/mct_webvision/solver.prototxt"])
def test_shipped_mct_solvers_load(solver, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = MCTConfig(solver)
    assert 0 < config.pretrain_iter < config.max_iter
    if config.noise_rate is None:          # estimated by M_a when calibration starts
        assert config.mct.HasField("clean_validation")
    else:
        assert 0 < config.noise_rate < 1
    calibrate = config.stage_param(PRIMARY, CALIBRATE)
    distill = [layer for layer in calibrate.net_param.layer if layer.type == "SoftTargetLoss"]
    assert distill and distill[0].soft_target_param.temperature == \
        config.mct.distillation.temperature
