"""The paper comparison's algebra on a synthetic per-image cost (no net is built)."""
import json
from dataclasses import replace

import pytest

from pycaffe_mct.scaling import paper
from pycaffe_mct.scaling.report import format_paper
from pycaffe_mct.scaling.compute import ProfiledCompute
from pycaffe_mct.scaling.model import ScalingModel

# AlexNet-like: 0.04 s per pass of fixed cost, 12 ms per image, 4.35 GFLOP per image.
ALEXNET_LIKE = ProfiledCompute(fixed=0.04, per_image=0.012, global_batch=128,
                               flops_per_image=4.35e9)
ALEXNET_BYTES = 60_965_224 * 4


def test_paper_megabytes_are_mebibytes():
    assert paper.PARAM_BYTES["AlexNet"] == pytest.approx(ALEXNET_BYTES, rel=0.005)


def test_profiled_compute_shares_the_global_batch_plan():
    assert ALEXNET_LIKE.at_batch(128) == pytest.approx(0.04 + 128 * 0.012)
    assert ALEXNET_LIKE(4) == pytest.approx(ALEXNET_LIKE.at_batch(128) / 32)
    assert ALEXNET_LIKE(0.25) == pytest.approx(ALEXNET_LIKE.at_batch(128) / 512)


@pytest.mark.parametrize("per_cg_batch", [False, True])
def test_implied_efficiency_hits_the_anchor_row(per_cg_batch):
    model = ScalingModel()
    efficiency = paper.implied_efficiency(model, ALEXNET_LIKE, ALEXNET_BYTES, per_cg_batch)
    anchored = replace(model, compute_efficiency=efficiency)
    workload = paper.table1_workload(ALEXNET_LIKE, ALEXNET_BYTES, paper.ANCHOR_CGS,
                                     per_cg_batch)
    hours = anchored.training_hours(workload, paper.ANCHOR_CGS)
    assert hours == pytest.approx(paper.TABLE1_HOURS[paper.ANCHOR_CGS])


def test_table1_rows_name_the_term_when_they_miss():
    model = ScalingModel(compute_efficiency=1.0)        # far too fast: rows up to 256 miss
    rows = paper.compare_table1(model, ALEXNET_LIKE, ALEXNET_BYTES)
    assert [r.cgs for r in rows] == list(paper.TABLE1_HOURS)
    assert all(r.ratio < 0.8 and "compute" in r.miss for r in rows if r.cgs <= 256)
    anchored = replace(model, compute_efficiency=paper.implied_efficiency(
        model, ALEXNET_LIKE, ALEXNET_BYTES))
    first = paper.compare_table1(anchored, ALEXNET_LIKE, ALEXNET_BYTES)[0]
    assert first.ratio == pytest.approx(1.0) and first.miss == ""
    assert first.per_cg_reading_hours == pytest.approx(first.paper_hours)


def test_communication_rows_follow_the_parameter_sizes():
    rows = paper.communication_rows(ScalingModel(), [1, 32, 512])
    assert rows[0]["AlexNet allreduce"] == 0.0
    assert rows[2]["AlexNet allreduce"] > rows[2]["ResNet-50 allreduce"]
    assert all(paper.communication_claims(rows).values())


def test_efficiency_falls_below_half_where_allreduce_outgrows_compute():
    model = ScalingModel(compute_efficiency=paper.PAPER_COMPUTE_EFFICIENCY)
    workload = paper.table1_workload(ALEXNET_LIKE, ALEXNET_BYTES)
    row = paper.first_below(model, workload)
    previous = model.rows(workload, [row.cost.cgs // 2])[0]
    assert row.efficiency < 0.5 <= previous.efficiency


def test_paper_report_text_and_json():
    model = ScalingModel(compute_efficiency=paper.PAPER_COMPUTE_EFFICIENCY)
    results, rows = paper.reproduce(model, ALEXNET_LIKE, ALEXNET_BYTES)
    assert [row["cgs"] for row in results["table1"]] == list(paper.TABLE1_HOURS)
    assert {"with_prefetch", "without_prefetch"} <= set(results["fig3"][0])
    assert all(r["without_prefetch"] >= r["with_prefetch"] for r in results["fig3"])
    assert [row.cost.cgs for row in rows][:6] == [1, *paper.TABLE1_HOURS]
    json.dumps(results)
    text = format_paper(results)
    assert "== Table 1" in text and "Fig. 4" in text and "157.5" in text


def test_required_reduction_rate_brings_the_last_row_to_the_ratio_asked():
    model = ScalingModel(compute_efficiency=paper.PAPER_COMPUTE_EFFICIENCY)
    rate = paper.required_reduction_rate(model, ALEXNET_LIKE, ALEXNET_BYTES, 512, 1.2)
    assert rate > model.network.reduce_bytes_per_s
    ratio = paper.ratio_at_reduction_rate(model, ALEXNET_LIKE, ALEXNET_BYTES, 512, rate)
    assert ratio == pytest.approx(1.2, rel=1e-6)
    free = paper.ratio_at_reduction_rate(model, ALEXNET_LIKE, ALEXNET_BYTES, 512, float("inf"))
    assert free < 1.2
    assert paper.required_reduction_rate(model, ALEXNET_LIKE, ALEXNET_BYTES, 512,
                                         free * 0.9) is None


def test_fig4_rows_carry_the_soft_target_exchange():
    rows = paper.communication_rows(ScalingModel(), [2, 512])
    network = ScalingModel().network
    logits = paper.ALLGATHER_BATCH["AlexNet"] * paper.CLOTHING1M_CLASSES * 4
    assert rows[1]["AlexNet soft targets"] == pytest.approx(
        network.latency_s + logits * network.seconds_per_byte)
    claims = paper.communication_claims(rows)
    assert len(claims) == 2 and all(claims.values())
