"""Finding the wrong labels: MCT's label-issue report against cleanlab, on the bundled digits.

    nice -n 10 python bench/bench_label_issues.py           # both settings (~8 min, busy cores)
    python bench/bench_label_issues.py --settings symmetric:0.4 --folds 5

For each setting, ``make_digits_dataset`` writes the digits with that noise
(``--noise``/``--rate``) under ``--data``, and the truth is its
``noisy_true.txt``.  Two ways to find the noisy split's wrong labels, in the
same run:

  mct       ``mct_train --label-issues DIR`` with models/mct_digits (pointed at
            this data, no noise-only baseline; like the demo it is not told the
            noise rate, M_a estimates it from the clean validation split):
            both models trained once, then the report scores the
            noisy set with both (is_issue; AUROC of -label_quality).  Compute:
            the whole mct_train run; "scoring" is the report alone, timed again
            through ``pycaffe_mct label_issues`` on the files mct_train wrote.
  cleanlab  confident learning as cleanlab recommends it: out-of-sample
            probabilities from K-fold cross-validation (stratified) of one
            model trained on the noisy labels (M_p's net and solver, plain
            softmax loss, same iterations), then ``cleanlab.filter.
            find_label_issues`` (prune_by_noise_rate) and
            ``cleanlab.rank.get_label_quality_scores`` (self_confidence) for
            AUROC.  Compute: the K trainings and predictions plus cleanlab.
            Twice: on the noisy set alone (what the issue asks for), and
            with the clean subset added to every fold's training data, since
            MCT's M_a learns from that subset too.

Also printed: each method's estimated noise rate and the mean absolute error
of its estimated transition matrix P(given | true) against the realised one.
cleanlab is needed for this bench only (``pip install cleanlab``).
"""
import argparse
import contextlib
import io
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pycaffe_mct.cli import main as pycaffe_main  # noqa: E402
from pycaffe_mct.data.datum import datum_pixels, parse_datum  # noqa: E402
from pycaffe_mct.data.lmdb_io import LMDBReader  # noqa: E402
from pycaffe_mct.commands.mct_train import mct_train_main  # noqa: E402
from pycaffe_mct.mct.selection import softmax_rows  # noqa: E402
from pycaffe_mct.mct.trainer import ArrayFeeder, feed, producing_layer  # noqa: E402
from pycaffe_mct.solvers.log import GlogWriter, set_default_writer  # noqa: E402
from pycaffe_mct.solvers.params import read_solver_param  # noqa: E402
from pycaffe_mct.solvers.solver import get_solver  # noqa: E402
from pycaffe_mct.tools.make_digits_dataset import (  # noqa: E402
    DEMO_VAL_FRACTION, make_digits_dataset)

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "mct_digits")
QUIET = GlogWriter(enabled=False)
SCALE = 0.00390625


# ---- compute -----------------------------------------------------------------------

@contextlib.contextmanager
def measured(into):
    """Adds wall seconds and CPU seconds (this process and its children) to ``into``."""
    def cpu():
        own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    wall, start = time.perf_counter(), cpu()
    yield
    into["wall"] = into.get("wall", 0) + time.perf_counter() - wall
    into["cpu"] = into.get("cpu", 0) + cpu() - start


# ---- truth and scores ------------------------------------------------------------------

def read_list(path):
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1]))
            for line in open(path, encoding="utf-8").read().splitlines()]


def scores(is_wrong, flagged, suspicion):
    hits = np.sum(flagged & is_wrong)
    return {"precision": hits / max(flagged.sum(), 1), "recall": hits / max(is_wrong.sum(), 1),
            "auroc": roc_auc_score(is_wrong, suspicion), "flagged": int(flagged.sum())}


def realised_transition(given, true, classes=10):
    joint = np.zeros((classes, classes))
    np.add.at(joint, (true, given), 1)
    return joint / joint.sum(axis=1, keepdims=True)


# ---- MCT -----------------------------------------------------------------------------

def write_job(workdir, data):
    """models/mct_digits pointed at ``data`` and ``workdir``; returns the MCT solver path."""
    os.makedirs(workdir, exist_ok=True)
    for name in os.listdir(MODELS):
        text = open(os.path.join(MODELS, name), encoding="utf-8").read()
        text = (text.replace("data/digits/", data + "/")
                .replace("models/mct_digits/", workdir + "/")
                .replace("runs/mct_digits/", workdir + "/run/")
                .replace("compare_noise_only: true", "compare_noise_only: false"))
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return os.path.join(workdir, "solver.prototxt")


def run_mct(workdir, data):
    """(report directory, compute of mct_train, compute of the scoring alone)."""
    solver = write_job(workdir, data)
    report, again = os.path.join(workdir, "report"), os.path.join(workdir, "again")
    training, scoring = {}, {}
    with measured(training), contextlib.redirect_stderr(io.StringIO()):
        assert mct_train_main(["--solver", solver, "--label-issues", report]) == 0
    run = os.path.join(workdir, "run")
    with measured(scoring), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        assert pycaffe_main([
            "label_issues", "--model", f"{run}/primary_deploy.prototxt",
            "--weights", f"{run}/primary_deploy.caffemodel",
            "--aux-model", f"{run}/aux_deploy.prototxt",
            "--aux-weights", f"{run}/aux_iter_300.caffemodel",
            "--source", f"{data}/noisy_lmdb", "--transform", f"scale: {SCALE}",
            "--out", again]) == 0
    return report, training, scoring


def mct_result(report, is_wrong, keys_in_order):
    import csv
    import json
    with open(os.path.join(report, "label_issues.csv"), newline="") as handle:
        rows = {int(r["index"]): r for r in csv.DictReader(handle)}
    assert [rows[i]["key"].split("_", 1)[1] for i in range(len(rows))] == keys_in_order
    flagged = np.array([rows[i]["is_issue"] == "1" for i in range(len(rows))])
    quality = np.array([float(rows[i]["label_quality"]) for i in range(len(rows))])
    summary = json.load(open(os.path.join(report, "summary.json")))
    return scores(is_wrong, flagged, -quality), summary["noise_rate"], \
        np.array(summary["transition_matrix"])


# ---- cleanlab on cross-validated probabilities ------------------------------------------

def lmdb_arrays(path):
    """(images scaled as the models' transform_param, labels) of an LMDB."""
    reader = LMDBReader(path)
    images, labels = [], []
    with reader.transaction() as txn:
        for index in range(len(reader)):
            datum = parse_datum(reader.read(txn, index), reader.where(index))
            images.append(datum_pixels(datum, reader.where(index)).astype(np.float32) * SCALE)
            labels.append(datum.label)
    reader.close()
    return np.stack(images), np.array(labels)


def train_plain(solver_file, images, labels, seed):
    """M_p's net and solver on the noisy labels (plain softmax, stage mct_pretrain)."""
    param, source = read_solver_param(solver_file)
    param.train_state.stage.append("mct_pretrain")
    param.test_interval, param.snapshot = 10 ** 9, 0
    param.test_initialization = param.snapshot_after_train = False
    param.random_seed = seed
    solver = get_solver(param, log=QUIET, source=source)
    feeder = ArrayFeeder(images, labels, 64, seed)
    for _ in range(param.max_iter):
        batch_images, batch_labels = feeder.next()
        feed(solver.net, {"data": batch_images, "label": batch_labels})
        solver.step(1)
    return solver.net


def probabilities(net, images):
    feed(net, {"data": images, "label": np.zeros(len(images), np.float32)})
    net.forward_from_to(0, producing_layer(net, "logits"))
    return softmax_rows(net.blobs["logits"].data.reshape(len(images), -1).astype(np.float64))


def run_cleanlab(workdir, data, folds, with_clean):
    """cleanlab on K-fold out-of-sample probabilities of the noisy set; ``with_clean``: the
    clean subset joins every fold's training data (MCT's M_a sees it too)."""
    from cleanlab.count import compute_confident_joint, estimate_latent
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold
    compute = {}
    with measured(compute):
        images, labels = lmdb_arrays(f"{data}/noisy_lmdb")
        clean = lmdb_arrays(f"{data}/clean_lmdb") if with_clean else (images[:0], labels[:0])
        probs = np.zeros((len(labels), 10))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
        for fold, (train, held_out) in enumerate(splitter.split(images, labels)):
            net = train_plain(os.path.join(workdir, "primary_solver.prototxt"),
                              np.concatenate([images[train], clean[0]]),
                              np.concatenate([labels[train], clean[1]]).astype(np.float32),
                              seed=fold + 1)
            probs[held_out] = probabilities(net, images[held_out])
        flagged = find_label_issues(labels, probs)
        quality = get_label_quality_scores(labels, probs, method="self_confidence")
        true_prior, noise_matrix, _ = estimate_latent(compute_confident_joint(labels, probs),
                                                      labels)
    rate = 1 - float(np.sum(true_prior * np.diag(noise_matrix)))
    return flagged, quality, rate, noise_matrix.T, compute


# ---- the table -------------------------------------------------------------------------

def run_setting(noise, rate, root, folds):
    data = os.path.join(root, f"digits_{noise}_{rate}")
    made = make_digits_dataset(data, noise, rate, overwrite=True,
                               val_fraction=DEMO_VAL_FRACTION)
    given = read_list(os.path.join(data, "noisy.txt"))
    true = read_list(os.path.join(data, "noisy_true.txt"))
    paths = [p for p, _ in given]
    given_labels, true_labels = np.array([g for _, g in given]), np.array([t for _, t in true])
    is_wrong = given_labels != true_labels
    truth_t = realised_transition(given_labels, true_labels)
    workdir = os.path.join(root, f"job_{noise}_{rate}")
    report, training, scoring = run_mct(workdir, data)
    mct_scores, our_rate, our_t = mct_result(report, is_wrong, paths)
    rows = [("MCT report (mct_train --label-issues)", mct_scores, our_rate,
             np.abs(our_t - truth_t).mean(), training, scoring)]
    for with_clean in (False, True):
        flagged, quality, their_rate, their_t, compute = run_cleanlab(workdir, data, folds,
                                                                      with_clean)
        name = f"cleanlab, {folds}-fold CV of one model" + \
            (" (+ clean subset in training)" if with_clean else " (noisy set only)")
        rows.append((name, scores(is_wrong, flagged, -quality), their_rate,
                     np.abs(their_t - truth_t).mean(), compute, None))
    return {"setting": f"{noise} {rate}", "realised": made["realised_rate"],
            "samples": len(paths), "rows": rows}


def format_setting(result):
    lines = [f"\n{result['setting']} (realised {result['realised']:.3f}, "
             f"{result['samples']} noisy-split samples; CPU ratios against cleanlab on the "
             f"noisy set only)",
             "| method | precision | recall | AUROC | flagged | est. noise | T MAE | CPU s "
             "| wall s |", "|---|---|---|---|---|---|---|---|---|"]
    base = result["rows"][1][4]["cpu"]
    for name, s, rate, t_error, compute, scoring in result["rows"]:
        extra = (f" (scoring alone: {scoring['cpu']:.1f} CPU s, {scoring['wall']:.1f} s)"
                 if scoring else "")
        lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['auroc']:.4f} "
                     f"| {s['flagged']} | {rate:.3f} | {t_error:.3f} | {compute['cpu']:.1f} "
                     f"({compute['cpu'] / base:.2f}x){extra} | {compute['wall']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="symmetric:0.4,pairflip:0.45",
                        help="noise:rate pairs, comma separated")
    parser.add_argument("--folds", type=int, default=5, help="cleanlab's cross-validation")
    parser.add_argument("--data", help="where to write the data sets and jobs (a temporary "
                                       "directory by default, removed afterwards)")
    args = parser.parse_args(argv)
    set_default_writer(QUIET)
    root = args.data or tempfile.mkdtemp(prefix="bench_label_issues_")
    print(f"bench_label_issues: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        for setting in args.settings.split(","):
            noise, rate = setting.split(":")
            print(format_setting(run_setting(noise, float(rate), root, args.folds)), flush=True)
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
