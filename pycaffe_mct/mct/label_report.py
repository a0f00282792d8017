"""The label-issue report's files, and the directory that holds them.

The report is written into a fresh temporary directory beside ``--out`` and
then swapped in with one rename (Linux's renameat2 RENAME_EXCHANGE when the
old report exists), so a reader sees the old report or the new one, never a
mix; an interrupted run leaves the old report as it was.  An existing
``--out`` is only replaced if it is empty or holds a report (a directory of
someone's images is never deleted).
"""
import csv
import ctypes
import io
import json
import os
import re
import shutil
import tempfile

import numpy as np

from ..errors import CaffeError
from ..proto_io import _umask, write_atomically

CSV_COLUMNS = ["index", "key", "given_label", "suggested_label", "label_quality", "is_issue"]
REPORT_MARKER = "summary.json"
_LMDB_KEY = re.compile(r"^\d{8}_(.+)$")


# ---- the directory -------------------------------------------------------------

def check_out_dir(out):
    """Refuse an ``--out`` that is a file, or a directory that is not a report."""
    if os.path.isfile(out):
        raise CaffeError(f"--out '{out}' is a file; the report is a directory")
    if os.path.isdir(out) and os.listdir(out) and \
            not os.path.isfile(os.path.join(out, REPORT_MARKER)):
        raise CaffeError(f"--out '{out}' is a directory that holds no label-issue report "
                         f"({REPORT_MARKER}); choose a new or empty directory")


def temporary_dir(out):
    """A new directory beside ``out`` to write the report into (parents made as needed)."""
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.",
                                dir=parent)
    except OSError as exc:
        raise CaffeError(f"--out '{out}': cannot create a directory beside it: {exc}") from None


def _exchange(first, second):
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                     rename_exchange) == 0


def publish(written, out):
    """Put the directory ``written`` at ``out``, replacing an old report there."""
    os.chmod(written, 0o777 & ~_umask())      # mkdtemp made it private
    if not os.path.isdir(out):
        os.rename(written, out)
        return
    if not _exchange(written, out):
        retired = written + ".old"
        os.rename(out, retired)
        os.rename(written, out)
        written = retired
    shutil.rmtree(written)                    # the old report


# ---- the files -----------------------------------------------------------------

def list_path(key, from_lmdb):
    """The path convert_imageset was given for a record: its LMDB key without the
    8-digit line number (a key of another form is kept whole)."""
    if not from_lmdb:
        return key
    match = _LMDB_KEY.match(key)
    return match.group(1) if match else key


def write_csv(path, issues, keys, probs=None):
    """label_issues.csv: one row per sample, most suspect first."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = list(CSV_COLUMNS)
        if probs is not None:
            header += [f"prob_{k}" for k in range(issues.num_classes)]
        writer.writerow(header)
        for index in issues.order():
            row = [int(index), keys(index), int(issues.labels[index]),
                   int(issues.suggested[index]), f"{issues.quality[index]:.6g}",
                   int(issues.is_issue[index])]
            if probs is not None:
                row += [f"{p:.6g}" for p in probs[index]]
            writer.writerow(row)


def summary(issues, inputs):
    """The summary.json content: estimates, rule, thresholds, counts, and the inputs."""
    classes = issues.num_classes
    return {
        "samples": int(len(issues.labels)),
        "classes": classes,
        "issues": int(issues.is_issue.sum()),
        "noise_rate": issues.noise_rate,
        "noise_rate_per_class": issues.per_class_rate.tolist(),
        "given_per_class": np.bincount(issues.labels, minlength=classes).tolist(),
        "issues_per_class": np.bincount(issues.labels, weights=issues.is_issue,
                                        minlength=classes).astype(int).tolist(),
        "transition_matrix": issues.transition.tolist(),
        "transition_matrix_meaning": "T[i][j] = P(given label j | true class i)",
        "joint": issues.joint.tolist(),
        "joint_meaning": "Q[i][j] = share of the set labelled i whose true class is j",
        "confident_joint": issues.confident_joint.tolist(),
        "rule": issues.rule,
        "issue_threshold_per_class": issues.issue_thresholds,
        "confidence_threshold_per_class": [None if np.isinf(t) else float(t)
                                           for t in issues.class_thresholds],
        "inputs": inputs,
    }


def write_summary(path, content):
    write_atomically(path, json.dumps(content, indent=1) + "\n")


def cleaned_list(issues, keys, from_lmdb, mode):
    """The list file, in the set's order, with suspects dropped or given the suggested label."""
    out = io.StringIO()
    for index in range(len(issues.labels)):
        label = int(issues.labels[index])
        if issues.is_issue[index]:
            if mode == "drop":
                continue
            label = int(issues.suggested[index])
        out.write(f"{list_path(keys(index), from_lmdb)} {label}\n")
    return out.getvalue()
