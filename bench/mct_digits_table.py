"""MCT against the usual ways of training on noisy labels, on the bundled digits.

    python bench/mct_digits_table.py                        # the full table (~20 min, 2 cores)
    python bench/mct_digits_table.py --noise symmetric --rate 0.4 --seeds 1 --methods noisy,mct
    python bench/mct_digits_table.py --json table.json

Data: scikit-learn's 1797 real handwritten digits as ``make_digits_dataset``
draws them (28x28).  For every seed: 20% test images; of the training
images ``--clean-fraction`` keep their true labels (the clean subset), the
rest get synthetic noise (symmetric: a uniformly drawn other class; pair-flip:
k -> k+1) at ``--rate``.  Every method trains the same small net (a
784-128-10 perceptron, so the whole table fits in minutes) for the same
number of iterations with the same SGD settings, through the library's own
solvers and layers, and is scored by test accuracy:

  noisy     noisy labels only
  clean     the clean subset only
  mixed     noisy and clean together
  finetune  noisy labels, then fine-tuned on the clean subset (rate / 10)
  distill   Li et al. 2017: a model trained on the clean subset gives soft
            targets; the student learns from all training images with
            0.5 * labels + 0.5 * the teacher's predictions (SoftTargetLoss, T=1)
  coteach   Co-teaching (Han et al. 2018) on noisy + clean: two nets, each
            trains on the small-loss samples the other picks; the forgotten
            share rises linearly to the noise rate over the first third
  mct       Mutual Calibration Training (pycaffe_mct.mct.MCTTrainer), M_p scored;
            M_p's SoftTargetLoss at T=1, soft weight 0.2
  upper     every training image with its true label (the upper bound)
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pycaffe_mct.mct.selection import softmax_rows  # noqa: E402
from pycaffe_mct.mct.trainer import ArrayFeeder, MCTTrainer, feed, producing_layer  # noqa: E402
from pycaffe_mct.proto import caffe_pb2  # noqa: E402
from pycaffe_mct.proto_io import parse_prototxt  # noqa: E402
from pycaffe_mct.solvers.log import GlogWriter, set_default_writer  # noqa: E402
from pycaffe_mct.solvers.solver import get_solver  # noqa: E402
from pycaffe_mct.tools.make_digits_dataset import corrupt_labels, digit_images  # noqa: E402

METHODS = ("noisy", "clean", "mixed", "finetune", "distill", "coteach", "mct", "upper")
LEVELS = (("symmetric", 0.4), ("symmetric", 0.6), ("pairflip", 0.45))
ITERATIONS = 360          # ~18 epochs of the noisy split at batch 64
BATCH, CLEAN_BATCH = 64, 32
BASE_LR = 0.05
CLASSES = 10
# M_p's distillation in MCT: M_a's plain probabilities (T = 1) as a light
# regulariser (weight 0.2) next to the hard labels of the N selected samples.
# M_a learns from ~140 clean images plus its selection, so a heavier or
# softer (T = 2, weight 0.5) pull towards it cost M_p accuracy at every noise
# level in 2-seed probes (README, "Mutual Calibration Training").
MCT_TEMPERATURE, MCT_SOFT_WEIGHT = 1, 0.2
QUIET = GlogWriter(enabled=False)


# ---- data -------------------------------------------------------------------

def make_split(noise, rate, clean_fraction, seed):
    """Arrays of one seed's split: test, clean and noisy (with its corrupted labels)."""
    images, labels = digit_images()
    images = images[:, None].astype(np.float32) / 255.0
    generator = np.random.default_rng(seed)
    order = generator.permutation(len(labels))
    n_test = int(round(len(labels) * 0.2))
    test, train = order[:n_test], order[n_test:]
    n_clean = int(round(len(train) * clean_fraction))
    clean, noisy = train[:n_clean], train[n_clean:]
    noisy_labels = corrupt_labels(labels[noisy], noise, rate, generator)
    return {"test": (images[test], labels[test]), "clean": (images[clean], labels[clean]),
            "noisy": (images[noisy], noisy_labels), "true": (images[noisy], labels[noisy])}


def union(*parts):
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ---- nets and solvers ---------------------------------------------------------

def _input(name, shape, stage=None):
    rule = "phase: TRAIN" + (f' stage: "{stage}"' if stage else "")
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" include {{ {rule} }} '
            f'input_param {{ shape {{ {dims} }} }} }}\n')


BODY = """
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 128 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "logits"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
"""


def weighted_net():
    """Images, labels and per-sample weights in; weighted softmax loss."""
    return parse_prototxt(
        _input("data", [BATCH, 1, 28, 28]) + _input("label", [BATCH])
        + _input("sample_weight", [BATCH]) + BODY
        + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" '
          'bottom: "sample_weight" top: "loss" }\n', caffe_pb2.NetParameter())


def distill_net(temperature, soft_weight):
    """M_p's net: plain loss in stage mct_pretrain, SoftTargetLoss in mct_calibrate."""
    return parse_prototxt(
        _input("data", [BATCH, 1, 28, 28]) + _input("label", [BATCH])
        + _input("mask", [BATCH], "mct_calibrate")
        + _input("aux_logits", [BATCH, CLASSES], "mct_calibrate") + BODY
        + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" '
          'top: "loss" include { phase: TRAIN stage: "mct_pretrain" } }\n'
          'layer { name: "distill" type: "SoftTargetLoss" bottom: "logits" '
          'bottom: "aux_logits" bottom: "label" bottom: "mask" top: "loss" '
          'include { phase: TRAIN stage: "mct_calibrate" } '
          f'soft_target_param {{ temperature: {temperature} soft_weight: {soft_weight} }} }}\n',
        caffe_pb2.NetParameter())


def solver_param(net_param, seed, iterations=ITERATIONS, lr=BASE_LR, stage=None):
    param = caffe_pb2.SolverParameter(
        base_lr=lr, momentum=0.9, weight_decay=5e-4, lr_policy="step", gamma=0.1,
        stepsize=int(iterations * 2 / 3), max_iter=iterations, display=0,
        random_seed=seed, snapshot_after_train=False)
    param.train_net_param.CopyFrom(net_param)
    if stage:
        param.train_state.stage.append(stage)
    return param


def make_solver(net_param, seed, **settings):
    return get_solver(solver_param(net_param, seed, **settings), log=QUIET, source="bench")


def logits(net, images):
    feed(net, {"data": images})
    net.forward_from_to(0, producing_layer(net, "logits"))
    return net.blobs["logits"].data.reshape(len(images), -1).astype(np.float64)


def accuracy(net, split):
    images, labels = split["test"]
    return float(np.mean(logits(net, images).argmax(axis=1) == labels))


def train_weighted(solver, feeder, iterations):
    for _ in range(iterations):
        images, labels = feeder.next()
        feed(solver.net, {"data": images, "label": labels,
                          "sample_weight": np.ones(len(labels), np.float32)})
        solver.step(1)
    return solver


# ---- the methods --------------------------------------------------------------

def run_plain(split, seed, parts, batch=BATCH):
    data = union(*[split[p] for p in parts])
    solver = make_solver(weighted_net(), seed)
    train_weighted(solver, ArrayFeeder(*data, batch, seed), ITERATIONS)
    return accuracy(solver.net, split)


def run_finetune(split, seed):
    solver = make_solver(weighted_net(), seed)
    train_weighted(solver, ArrayFeeder(*split["noisy"], BATCH, seed), ITERATIONS)
    tuned = make_solver(weighted_net(), seed, iterations=ITERATIONS // 3, lr=BASE_LR / 10)
    tuned.net.copy_from(solver.net.to_proto())
    train_weighted(tuned, ArrayFeeder(*split["clean"], CLEAN_BATCH, seed), ITERATIONS // 3)
    return accuracy(tuned.net, split)


def run_distill(split, seed):
    teacher = make_solver(weighted_net(), seed)
    train_weighted(teacher, ArrayFeeder(*split["clean"], CLEAN_BATCH, seed), ITERATIONS)
    student = make_solver(distill_net(1, 0.5), seed, stage="mct_calibrate")
    feeder = ArrayFeeder(*union(split["noisy"], split["clean"]), BATCH, seed)
    for _ in range(ITERATIONS):
        images, labels = feeder.next()
        feed(student.net, {"data": images, "label": labels,
                           "mask": np.ones(len(labels), np.float32),
                           "aux_logits": logits(teacher.net, images).astype(np.float32)})
        student.step(1)
    return accuracy(student.net, split)


def run_coteach(split, seed, rate):
    nets = [make_solver(weighted_net(), seed * 2 + k) for k in range(2)]
    feeder = ArrayFeeder(*union(split["noisy"], split["clean"]), BATCH, seed)
    ramp = ITERATIONS // 3
    for iteration in range(ITERATIONS):
        images, labels = feeder.next()
        keep = int(round(len(labels) * (1 - rate * min(1.0, iteration / ramp))))
        rows = np.arange(len(labels))
        losses = []
        for solver in nets:
            probs = softmax_rows(logits(solver.net, images))
            losses.append(-np.log(np.maximum(probs[rows, labels.astype(int)], 1e-12)))
        for solver, peer_loss in zip(nets, reversed(losses)):
            weights = np.zeros(len(labels), np.float32)
            weights[np.argsort(peer_loss, kind="stable")[:keep]] = 1
            feed(solver.net, {"data": images, "label": labels, "sample_weight": weights})
            solver.step(1)
    return accuracy(nets[0].net, split)


def mct_solver_param(seed, rate):
    """An MCT job built in memory: the same net for both models."""
    param = caffe_pb2.SolverParameter(random_seed=seed)
    mct = param.mct_param
    pretrain = ITERATIONS // 3
    mct.aux_solver_param.CopyFrom(solver_param(weighted_net(), seed))
    primary_net = distill_net(MCT_TEMPERATURE, MCT_SOFT_WEIGHT)
    mct.primary_solver_param.CopyFrom(solver_param(primary_net, seed + 1))
    for role in (mct.aux_solver_param, mct.primary_solver_param):
        role.snapshot = 0
        role.snapshot_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                            f"mct_bench_{os.getpid()}")
    for name, batch in (("clean_data", CLEAN_BATCH), ("noisy_data", BATCH)):
        layer = getattr(mct, name)
        layer.type, layer.name = "Data", name
        layer.top.extend(["data", "label"])
        layer.data_param.batch_size = batch
    mct.pretrain_iter = pretrain
    mct.pretrain_lr = BASE_LR
    mct.selection.noise_rate = rate
    return param


def run_mct(split, seed, rate):
    feeders = {"clean_data": ArrayFeeder(*split["clean"], CLEAN_BATCH, seed),
               "noisy_data": ArrayFeeder(*split["noisy"], BATCH, seed)}
    trainer = MCTTrainer(mct_solver_param(seed, rate), feeders=feeders)
    trainer.deploy = lambda: None          # the benchmark scores M_p in memory
    trainer.train()                        # the models log to the (quiet) default writer
    return accuracy(trainer.models["primary"].net, split)


def run_method(method, split, seed, rate):
    if method == "noisy":
        return run_plain(split, seed, ["noisy"])
    if method == "clean":
        return run_plain(split, seed, ["clean"], CLEAN_BATCH)
    if method == "mixed":
        return run_plain(split, seed, ["noisy", "clean"])
    if method == "upper":
        return run_plain(split, seed, ["true", "clean"])
    if method == "finetune":
        return run_finetune(split, seed)
    if method == "distill":
        return run_distill(split, seed)
    if method == "coteach":
        return run_coteach(split, seed, rate)
    return run_mct(split, seed, rate)


# ---- the table ------------------------------------------------------------------

def run_table(levels, methods, seeds, clean_fraction):
    rows = []
    for noise, rate in levels:
        for method in methods:
            start = time.perf_counter()
            scores = [run_method(method, make_split(noise, rate, clean_fraction, seed), seed,
                                 rate) for seed in seeds]
            rows.append({"method": method, "noise": noise, "rate": rate,
                         "mean": float(np.mean(scores)), "std": float(np.std(scores)),
                         "accuracies": scores, "seconds": time.perf_counter() - start})
            print(f"  {noise} {rate:g} {method:<9} {100 * rows[-1]['mean']:6.2f} "
                  f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def format_table(rows, methods):
    levels = sorted({(r["noise"], r["rate"]) for r in rows}, key=lambda x: (x[0] != "symmetric",
                                                                            x[1]))
    header = f"{'method':<10}" + "".join(f"{n + ' ' + format(r, 'g'):>18}" for n, r in levels)
    lines = [header, "-" * len(header)]
    for method in methods:
        cells = []
        for level in levels:
            row = next((r for r in rows if (r["noise"], r["rate"]) == level
                        and r["method"] == method), None)
            cells.append(f"{100 * row['mean']:6.2f} ± {100 * row['std']:4.2f}" if row else "-")
        lines.append(f"{method:<10}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", choices=("symmetric", "pairflip"),
                        help="one noise type (default: the three standard levels)")
    parser.add_argument("--rate", type=float, help="noise rate (with --noise)")
    parser.add_argument("--clean-fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (1..N)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma separated subset of " + ",".join(METHODS))
    parser.add_argument("--json", help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.noise:
        default_rate = dict((n, r) for n, r in reversed(LEVELS))[args.noise]
        levels = [(args.noise, args.rate if args.rate is not None else default_rate)]
    else:
        levels = list(LEVELS)
    set_default_writer(QUIET)
    rows = run_table(levels, methods, range(1, args.seeds + 1), args.clean_fraction)
    print(f"Test accuracy (%), mean ± std over {args.seeds} seeds, clean fraction "
          f"{args.clean_fraction:g}, {ITERATIONS} iterations each:")
    print(format_table(rows, methods))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
