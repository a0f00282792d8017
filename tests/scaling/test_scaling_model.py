"""The cost model's algebra: ring terms, prefetch, batch split, units."""
import pytest

import math

from pycaffe_mct.parallel.ring import MIN_PIECE_BYTES, PIECE_BYTES
from pycaffe_mct.scaling.model import (IOSpec, MCTSpec, NetworkSpec, ScalingModel, Workload,
                                       io_seconds, ring_allgather_seconds,
                                       ring_allreduce_seconds, ring_allreduce_terms)

NET = NetworkSpec(latency_s=3e-6, node_bytes_per_s=8e9, reduce_bytes_per_s=4e9)
ALPHA, BETA, GAMMA = 3e-6, 1 / 8e9, 1 / 4e9


def test_ring_terms_vanish_for_one_process():
    assert ring_allreduce_terms(1e9, 1, NET) == (0.0, 0.0, 0.0)
    assert ring_allgather_seconds(1e9, 1, NET) == 0.0


def test_ring_allreduce_of_one_piece_per_step_is_the_unpipelined_sum():
    # Segments under MIN_PIECE_BYTES go as one piece: 2(p-1)a + 2n(p-1)/p b + n(p-1)/p g.
    n = 1e5
    assert n / 2 < MIN_PIECE_BYTES
    assert ring_allreduce_seconds(n, 2, NET) == pytest.approx(2 * ALPHA + n * BETA
                                                               + n * GAMMA / 2)
    assert ring_allreduce_terms(n, 2, NET) == pytest.approx((2 * ALPHA, n * BETA, n * GAMMA / 2))


def test_adder_bound_ring_hides_all_transfers_but_the_first_piece():
    # gamma > beta: each reduce-scatter step pays the first piece's transfer (fill) and
    # every piece's addition; allgather steps pay the whole segment's transfer.
    n, p = 5e8, 4
    segment = n / p
    piece = segment / math.ceil(segment / PIECE_BYTES)
    latency, transfer, reduction = ring_allreduce_terms(n, p, NET)
    assert latency == pytest.approx(2 * 3 * ALPHA)
    assert transfer == pytest.approx(3 * (piece * BETA + segment * BETA))
    assert reduction == pytest.approx(3 * segment * GAMMA)


def test_link_bound_ring_hides_all_additions_but_the_last_piece():
    fast_adder = NetworkSpec(latency_s=3e-6, node_bytes_per_s=8e9, reduce_bytes_per_s=32e9)
    n, p = 4e6, 2                          # a 2 MB segment: four 0.5 MB pieces
    segment, piece = n / p, n / p / 4
    _, transfer, reduction = ring_allreduce_terms(n, p, fast_adder)
    assert transfer == pytest.approx(2 * segment * BETA)
    assert reduction == pytest.approx(piece / 32e9)


def test_pipelining_never_costs_more_than_the_unpipelined_sum():
    for n in (1e5, 1e7, 1e9):
        for p in (2, 8, 512):
            unpipelined = (2 * (p - 1) * ALPHA + 2 * n * (p - 1) / p * BETA
                           + n * (p - 1) / p * GAMMA)
            assert ring_allreduce_seconds(n, p, NET) <= unpipelined * (1 + 1e-12)


def test_ring_allgather_at_two_processes_by_hand():
    assert ring_allgather_seconds(4096, 2, NET) == pytest.approx(ALPHA + 2048 * BETA)


def test_allreduce_grows_with_processes_and_bytes():
    counts = [1, 2, 3, 8, 64, 512, 4096]
    by_count = [ring_allreduce_seconds(1e8, p, NET) for p in counts]
    assert by_count == sorted(by_count) and len(set(by_count)) == len(by_count)
    by_size = [ring_allreduce_seconds(n, 64, NET) for n in (1e3, 1e6, 1e9)]
    assert by_size == sorted(by_size) and len(set(by_size)) == 3


def test_bandwidth_term_tends_to_twice_the_buffer_over_the_link():
    _, bandwidth, _ = ring_allreduce_terms(1e9, 10 ** 6, NET)
    assert bandwidth == pytest.approx(2 * 1e9 * BETA, rel=1e-5)


def test_default_network_units():
    """128 Gb/s per node is 16e9 bytes/s: gathering a 16 GB buffer over 2 processes moves
    8 GB in 0.5 s; the reduction streams 22 GB/s / 3."""
    network = NetworkSpec()
    assert network.seconds_per_byte == pytest.approx(1 / 16e9)
    assert ring_allgather_seconds(16e9, 2, network) == pytest.approx(2e-6 + 0.5)
    assert network.reduce_seconds_per_byte == pytest.approx(3 / 22e9)
    shared = NetworkSpec(processes_per_node=4)
    assert shared.seconds_per_byte == pytest.approx(4 * network.seconds_per_byte)


def test_io_is_capped_by_the_shared_file_system():
    io = IOSpec(image_bytes=1e6, process_read_bytes_per_s=1e8, filesystem_bytes_per_s=1e9,
                decode_s=0.0)
    assert io_seconds(10, 1, io) == pytest.approx(0.1)      # own link: 10 MB at 100 MB/s
    assert io_seconds(10, 100, io) == pytest.approx(1.0)    # 1 GB/s shared by 100


def _workload(**changes):
    fields = dict(compute_seconds=lambda images: 0.1 * images, param_bytes=1e8,
                  global_batch=64, images=6400, epochs=3)
    fields.update(changes)
    return Workload(**fields)


def test_compute_splits_the_global_batch_and_divides_by_efficiency():
    model = ScalingModel(compute_efficiency=0.5)
    cost = model.iteration(_workload(), 4)
    assert cost.images_per_cg == 16
    assert cost.compute == pytest.approx(16 * 0.1 / 0.5)
    assert cost.allgather == 0.0
    assert _workload().iterations == 300


def test_replicated_mct_runs_both_models_on_every_cg():
    model = ScalingModel()
    mct = MCTSpec(layout="replicated", classes=10, forward_fraction=0.25, aux_batch_share=0.5)
    cost = model.iteration(_workload(mct=mct), 8)
    assert cost.images_per_cg == 8
    assert cost.compute == pytest.approx((1.25 + 0.75) * 8 * 0.1)
    assert cost.allreduce == pytest.approx(2 * ring_allreduce_seconds(1e8, 8, model.network))
    assert cost.allgather == pytest.approx(ring_allgather_seconds(2 * 64 * 4, 8, model.network))
    assert cost.exchange == 0.0
    assert cost.seconds == pytest.approx(cost.compute + cost.allreduce + cost.allgather
                                         + cost.io_exposed)


def test_grouped_mct_splits_the_cgs_between_the_models():
    """7 CGs: M_p on 4, M_a on 3, both reading all 64 samples; the slower group sets
    the pace; M_a's 10 logits per sample reach M_p after the confidence allgather."""
    model = ScalingModel()
    mct = MCTSpec(layout="grouped", classes=10, forward_fraction=0.25, aux_batch_share=0.5)
    cost = model.iteration(_workload(mct=mct), 7)
    assert cost.images_per_cg == 16
    primary = 1.25 * 16 * 0.1 + ring_allreduce_seconds(1e8, 4, model.network)
    auxiliary = 0.75 * 64 / 3 * 0.1 + ring_allreduce_seconds(1e8, 3, model.network)
    assert cost.compute + cost.allreduce == pytest.approx(max(primary, auxiliary))
    network = model.network
    assert cost.exchange == pytest.approx(network.latency_s
                                          + 64 / 3 * 10 * 4 * network.seconds_per_byte)
    assert cost.allgather == pytest.approx(ring_allgather_seconds(2 * 64 * 4, 7, network))


def test_grouped_mct_halves_each_models_allreduce_ring():
    """Equal work per model: the grouped layout's compute equals the replicated one's,
    and each model's ring spans half the CGs instead of both rings spanning all."""
    mct = dict(classes=10, forward_fraction=0.25, aux_batch_share=1.0)
    model = ScalingModel()
    grouped = model.iteration(_workload(mct=MCTSpec(layout="grouped", **mct)), 8)
    replicated = model.iteration(_workload(mct=MCTSpec(layout="replicated", **mct)), 8)
    assert grouped.compute == pytest.approx(replicated.compute)
    assert grouped.allreduce < replicated.allreduce / 2 + 1e-12


def test_unknown_mct_layout_is_refused():
    with pytest.raises(ValueError, match="unknown MCT layout 'mesh'"):
        MCTSpec(layout="mesh")


def test_prefetch_hides_io_up_to_the_iteration():
    slow_io = IOSpec(decode_s=1.0)
    with_prefetch = ScalingModel(io=slow_io).iteration(_workload(), 1)
    without = ScalingModel(io=slow_io, prefetch=False).iteration(_workload(), 1)
    busy = with_prefetch.compute + with_prefetch.allreduce
    assert with_prefetch.io_exposed == pytest.approx(with_prefetch.io - busy)
    assert without.io_exposed == without.io
    fast_io = ScalingModel(io=IOSpec(decode_s=0.0)).iteration(_workload(), 1)
    assert fast_io.io_exposed == 0.0 and fast_io.io > 0


def test_rows_hours_and_efficiency():
    model = ScalingModel()
    workload = _workload()
    rows = model.rows(workload, [1, 2, 16])
    assert rows[0].efficiency == pytest.approx(1.0)
    assert rows[1].hours == pytest.approx(rows[1].cost.seconds * 300 / 3600)
    assert 0 < rows[2].efficiency < rows[1].efficiency < 1
    assert set(rows[1].as_dict()) >= {"cgs", "seconds_per_iteration", "compute", "allreduce",
                                      "allgather", "io", "total_hours"}
