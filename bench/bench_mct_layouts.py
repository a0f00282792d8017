"""MCT's two MPI layouts side by side: grouped (the paper's) against replicated.

``python bench/bench_mct_layouts.py`` (from the repository root) starts itself
under ``mpiexec -n N`` for N = 2 and 4 and both layouts, and in one process
for reference, on two MCT pairs:

* ``digits``: the demo (models/mct_digits, LeNet-sized, data/digits; made with
  make_digits_dataset if missing), noisy:clean batches 64:32;
* ``cifar``: two CIFAR10-quick nets (models/cifar10_quick's layers) on random
  32x32 colour images in LMDBs made for the run, batches 64:32.

Each run trains ``--iterations`` of pretraining then as many of calibration;
rank 0 prints the mean seconds per iteration of each phase (the first
``WARMUP`` of each phase and the re-division left out), every rank's peak RSS,
and the bytes each collective moves per iteration: each model's gradient
allreduce (per rank, ring: 2(n-1)/n of the parameters), the calibration
Allgatherv of both models' scores and the labels (which also carries M_a's
soft targets to the M_p ranks) and, once, the state hand-over at the phase
change.  Ratios compare the layouts measured in the same invocation.  The
machine's load is printed before and after: with 4 ranks on 2 cores the runs
are oversubscribed, and other jobs may share the cores.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WARMUP = 2
CASES = ("digits", "cifar")
RANKS = (2, 4)
LAYOUTS = ("grouped", "replicated")
CIFAR_RECORDS = {"noisy": 1280, "clean": 640}

MCT_SOLVER = """random_seed: 1
mct_param {{
  aux_solver_param {{ {aux} }}
  primary_solver_param {{ {primary} }}
  clean_data {{ name: "clean" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }}
    data_param {{ source: "{clean}" batch_size: 32 backend: LMDB }} }}
  noisy_data {{ name: "noisy" type: "Data" top: "data" top: "label"
    transform_param {{ scale: 0.00390625 }}
    data_param {{ source: "{noisy}" batch_size: 64 backend: LMDB }} }}
  pretrain_iter: {pretrain}
  pretrain_lr: 0.01
  selection {{ noise_rate: 0.4 }}
  logits_blob: "{logits}"
  aux_snapshot_prefix: "{out}/aux"
  primary_snapshot_prefix: "{out}/primary"
}}
"""
SOLVER = ('net: "{net}" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: {max_iter} '
          'display: 0 snapshot: 0 snapshot_after_train: false test_initialization: false')


# ---- the jobs ------------------------------------------------------------------

def _digits_job(out, iterations):
    data = REPO / "data" / "digits"
    if not (data / "noisy_lmdb").is_dir():
        from pycaffe_mct.tools.make_digits_dataset import make_digits_dataset
        make_digits_dataset(str(data))
    nets = REPO / "models" / "mct_digits"
    return _mct_solver(out, iterations, nets / "aux_train_test.prototxt",
                       nets / "primary_train_test.prototxt", data / "clean_lmdb",
                       data / "noisy_lmdb", "logits")


def _cifar_job(out, iterations):
    """Two CIFAR10-quick nets with MCT's Inputs and losses, on random images."""
    body = _cifar_quick_body()
    for role in ("aux", "primary"):
        (out / f"{role}.prototxt").write_text(_mct_inputs(role) + body + _mct_losses(role))
    for seed, (kind, count) in enumerate(CIFAR_RECORDS.items()):
        _random_lmdb(out / f"{kind}_lmdb", count, seed)
    return _mct_solver(out, iterations, out / "aux.prototxt", out / "primary.prototxt",
                       out / "clean_lmdb", out / "noisy_lmdb", "ip2")


def _cifar_quick_body():
    """models/cifar10_quick's layers between the data and the loss, as prototxt."""
    from pycaffe_mct.proto import caffe_pb2
    from pycaffe_mct.proto_io import read_prototxt
    net = read_prototxt(str(REPO / "models/cifar10_quick/train_val.prototxt"),
                        caffe_pb2.NetParameter())
    kept = caffe_pb2.NetParameter()
    for layer in net.layer:
        if layer.type not in ("Data", "SoftmaxWithLoss", "Accuracy"):
            kept.layer.add().CopyFrom(layer)
    return str(kept)


def _input(name, dims, stage=None):
    rule = "phase: TRAIN" + (f' stage: "{stage}"' if stage else "")
    shape = " ".join(f"dim: {d}" for d in dims)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" include {{ {rule} }} '
            f'input_param {{ shape {{ {shape} }} }} }}\n')


def _mct_inputs(role):
    text = _input("data", [64, 3, 32, 32]) + _input("label", [64])
    if role == "aux":
        return text + _input("sample_weight", [64])
    return (text + _input("mask", [64], "mct_calibrate")
            + _input("aux_logits", [64, 10], "mct_calibrate"))


def _mct_losses(role):
    if role == "aux":
        return ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" '
                'bottom: "sample_weight" top: "loss" }\n')
    return ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" '
            'top: "loss" include { phase: TRAIN stage: "mct_pretrain" } }\n'
            'layer { name: "distill" type: "SoftTargetLoss" top: "loss" bottom: "ip2" '
            'bottom: "aux_logits" bottom: "label" bottom: "mask" '
            'include { phase: TRAIN stage: "mct_calibrate" } }\n')


def _random_lmdb(path, count, seed):
    from pycaffe_mct.data import LMDBWriter, image_to_datum, key_for
    generator = np.random.default_rng(seed)
    with LMDBWriter(str(path)) as writer:
        for index in range(count):
            image = generator.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            datum = image_to_datum(image, int(generator.integers(10)))
            writer.put(key_for(index, f"img{index}.png"), datum.SerializeToString())


def _mct_solver(out, iterations, aux_net, primary_net, clean, noisy, logits):
    settings = {role: SOLVER.format(net=net, max_iter=2 * iterations)
                for role, net in (("aux", aux_net), ("primary", primary_net))}
    path = out / "mct.prototxt"
    path.write_text(MCT_SOLVER.format(clean=clean, noisy=noisy, pretrain=iterations,
                                      logits=logits, out=out, **settings))
    return path


# ---- one run (every rank) ------------------------------------------------------

def run_worker(solver, layout, iterations):
    """Train, timing every iteration; rank 0 prints one JSON line."""
    from pycaffe_mct.mct.trainer import MCTTrainer
    from pycaffe_mct.parallel import world_if_launched
    world = world_if_launched()
    trainer = MCTTrainer(solver, world, layout=layout)
    seconds = []
    step = trainer.step

    def timed_step(iteration):
        begin = time.perf_counter()
        step(iteration)
        seconds.append(time.perf_counter() - begin)

    trainer.step = timed_step
    trainer.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peaks = world.allgather(peak_mb) if world is not None else [peak_mb]
    moved = _collective_bytes(trainer)             # collective: every rank
    if world is None or world.Get_rank() == 0:
        pretrain = seconds[WARMUP:iterations]
        calibrate = seconds[iterations + WARMUP:]
        print(json.dumps({"pretrain_s": float(np.mean(pretrain)),
                          "calibrate_s": float(np.mean(calibrate)),
                          "peak_mb": peaks, "bytes": moved}), flush=True)


def _collective_bytes(trainer):
    """Bytes per iteration of each collective, from the models' and batches' sizes
    (collective: every rank tells the sizes of the models it holds and of their groups)."""
    mine = {role: (4 * sum(blob.count for blob in model.net.learnable_params), model.seat.size)
            for role, model in trainer.models.items()}
    if trainer.world is not None:
        for theirs in trainer.world.allgather(mine):
            mine.update(theirs)
    result = {"param_bytes": {role: size for role, (size, _) in mine.items()}}
    for role, (size, n) in mine.items():
        result[f"{role}_allreduce_sent_per_rank"] = size * 2 * (n - 1) // n
        result[f"{role}_group"] = n
    batch = trainer.batches["noisy_data"]
    result["allgather_rows_bytes"] = 4 * batch * (2 * trainer.classes + 1)
    result["soft_target_bytes"] = 4 * batch * trainer.classes
    return result


# ---- the driver ----------------------------------------------------------------

def _launch(ranks, case, layout, iterations, out):
    command = [sys.executable, __file__, "--worker", case, layout, str(iterations), str(out)]
    if ranks > 1:
        command = ["mpiexec", "-n", str(ranks)] + command
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _print_case(case, rows):
    print(f"\n{case}: seconds per iteration (pretrain / calibrate), peak RSS per rank (MB)")
    for (ranks, layout), row in rows.items():
        peaks = ", ".join(f"{mb:.0f}" for mb in row["peak_mb"])
        print(f"  N={ranks} {layout:10s} {row['pretrain_s']:.3f} / {row['calibrate_s']:.3f}"
              f"   RSS [{peaks}] (sum {sum(row['peak_mb']):.0f})")
    for ranks in RANKS:
        grouped, replicated = rows[(ranks, "grouped")], rows[(ranks, "replicated")]
        print(f"  N={ranks} grouped / replicated: pretrain "
              f"{grouped['pretrain_s'] / replicated['pretrain_s']:.2f}x, calibrate "
              f"{grouped['calibrate_s'] / replicated['calibrate_s']:.2f}x time; RSS "
              f"{sum(grouped['peak_mb']) / sum(replicated['peak_mb']):.2f}x (sum over ranks)")
    _print_bytes(rows)


def _print_bytes(rows):
    print("  bytes per iteration (calibration):")
    for ranks in RANKS:
        for layout in LAYOUTS:
            b = rows[(ranks, layout)]["bytes"]
            groups = ", ".join(f"{role} allreduce {b[f'{role}_allreduce_sent_per_rank']:,} "
                               f"B sent per rank (group of {b[f'{role}_group']})"
                               for role in ("primary", "aux") if f"{role}_group" in b)
            print(f"    N={ranks} {layout}: {groups}")
        b = rows[(ranks, "grouped")]["bytes"]
        params = b["param_bytes"]
        print(f"    scores+labels Allgatherv: {b['allgather_rows_bytes']:,} B gathered on "
              f"every rank (M_a's soft targets {b['soft_target_bytes']:,} B of it); "
              f"parameters {params['primary']:,} B (M_p) + {params['aux']:,} B (M_a): "
              f"the parameter sync is {params['primary'] / b['allgather_rows_bytes']:.0f}x "
              f"the score exchange (paper, Fig. 4: far smaller); hand-over at the phase "
              f"change: parameters + history, once")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12,
                        help="iterations of each phase (the first 2 are warm-up)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "LAYOUT", "ITERATIONS", "DIR"),
                        help="internal: one run on this rank")
    args = parser.parse_args(argv)
    if args.worker:
        case, layout, iterations, out = args.worker
        solver = Path(out) / "mct.prototxt"
        return run_worker(str(solver), layout, int(iterations))
    print(f"bench_mct_layouts {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{len(os.sched_getaffinity(0))} cores, {_load()}")
    for case in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            (_digits_job if case == "digits" else _cifar_job)(out, args.iterations)
            rows = {(1, "one process"): _launch(1, case, "grouped", args.iterations, out)}
            for ranks in RANKS:
                for layout in LAYOUTS:
                    rows[(ranks, layout)] = _launch(ranks, case, layout, args.iterations, out)
            _print_case(case, rows)
        print(f"  ({_load()} after {case}; N=4 runs 4 ranks on "
              f"{len(os.sched_getaffinity(0))} cores: oversubscribed)")


if __name__ == "__main__":
    main()
