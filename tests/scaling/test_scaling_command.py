"""``pycaffe_mct scale`` on LeNet: the table, the JSON rows, plots and bad input."""
import json
from pathlib import Path

import pytest

from pycaffe_mct.cg.ops import winograd
from pycaffe_mct.cli import main
from pycaffe_mct.errors import CaffeError, NetError
from pycaffe_mct.commands.scale import scale_main
from pycaffe_mct.scaling.compute import _profile, deploy_param, profile_compute

LENET = Path(__file__).resolve().parents[2] / "models" / "lenet"
DEPLOY = str(LENET / "lenet_deploy.prototxt")
ARGS = ["--model", DEPLOY, "--batch", "64", "--images", "60000", "--epochs", "2",
        "--cgs", "1,4,16"]


@pytest.mark.parametrize("layout", ["grouped", "replicated"])
def test_json_rows(capsys, layout):
    assert scale_main(ARGS + ["--json", "--mct", "--layout", layout]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["param_bytes"] == 4 * 431080          # LeNet's 431,080 float32 parameters
    assert data["iterations"] == pytest.approx(60000 * 2 / 64)
    rows = data["rows"]
    assert [row["cgs"] for row in rows] == [1, 4, 16]
    for row in rows:
        parts = (row["compute"] + row["allreduce"] + row["allgather"] + row["exchange"]
                 + row["io"])
        assert row["seconds_per_iteration"] == pytest.approx(parts)
        assert row["total_hours"] == pytest.approx(
            row["seconds_per_iteration"] * data["iterations"] / 3600)
    assert rows[0]["allreduce"] == 0.0 and rows[1]["allreduce"] > 0
    assert rows[1]["allgather"] > 0
    assert (rows[1]["exchange"] > 0) == (layout == "grouped")
    assert rows[2]["compute"] == pytest.approx(rows[0]["compute"] / 16)


def test_profile_reads_the_class_count_and_the_forward_share():
    compute, _ = profile_compute(DEPLOY, 64)
    assert compute.classes == 10
    assert 0.2 < compute.forward_fraction < 0.6


def test_table_and_plots_through_the_cli(capsys, tmp_path):
    assert main(["scale", *ARGS, "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "allreduce" in out and len(out.strip().splitlines()) == 5
    for name in ("scaling.png", "breakdown.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_is_affine_in_the_batch():
    """Two small probes predict the plan at a larger batch."""
    compute, _ = profile_compute(DEPLOY, 64)
    records, _, _ = _profile(DEPLOY, 48)
    assert compute.at_batch(48) == pytest.approx(sum(r.cg_seconds for r in records), rel=0.02)


def test_training_net_is_refused_naming_file_and_layer():
    with pytest.raises(NetError, match=r"lenet_train_test.prototxt.*'digits' \(Data\)"):
        deploy_param(str(LENET / "lenet_train_test.prototxt"), 8)


def test_bad_flags(capsys):
    with pytest.raises(CaffeError, match="--images, --epochs"):
        scale_main(["--model", DEPLOY])
    with pytest.raises(SystemExit):
        main(["scale", "--model", DEPLOY, "--images", "1", "--epochs", "1", "--cgs", "4,x"])
    assert "--cgs '4,x'" in capsys.readouterr().err


def test_the_paper_report_profiles_convolutions_by_im2col(monkeypatch):
    """The paper's Caffe had no Winograd: with it switched off no 3x3 layer takes it, and
    the plan then does more work than our Winograd plan."""
    alexnet = Path(__file__).resolve().parents[2] / "models" / "alexnet" / "deploy.prototxt"
    taken = []
    monkeypatch.setattr(winograd, "_input_tiles", lambda *args, real=winograd._input_tiles: (
        taken.append(1), real(*args))[1])
    paper_software, _ = profile_compute(alexnet, 1, im2col_only=True)
    assert not taken
    ours, _ = profile_compute(alexnet, 1)
    assert taken and ours.flops_per_image < paper_software.flops_per_image
