"""Refusing an MCT job whose outputs collide, before anything is trained.

Each model writes snapshots ``<prefix>_iter_N.caffemodel/.solverstate`` and a
log ``<prefix>.log``; M_p's prefix also names the deploy pair and, with
``compare_noise_only``, the baseline's snapshots; ``mct_train --log`` names one
more file.  If two of these resolve to one path, one writer silently replaces
the other's files: a trained model lost without a word.
"""
import os
import re

from ..errors import CaffeError

_SNAPSHOT_TAIL = re.compile(r"\d+\.(caffemodel|solverstate)$")


def planned_outputs(config, log=None):
    """[(what, path)] of everything the job writes; snapshot series end in ``_iter_``."""
    outputs = []
    for role, (param, _) in config.solvers.items():
        outputs += [(f"{role} model's snapshots", param.snapshot_prefix + "_iter_"),
                    (f"{role} model's log", param.snapshot_prefix + ".log")]
    prototxt, caffemodel = config.deploy_paths()
    outputs += [("deploy prototxt", prototxt), ("deploy caffemodel", caffemodel)]
    if config.mct.compare_noise_only:
        baseline = config.solvers["primary"][0].snapshot_prefix + "_noise_only_iter_"
        outputs.append(("noise-only baseline's snapshots", baseline))
    if log:
        outputs.append(("--log file", log))
    return outputs


def _resolved(path):
    """``path`` with its directory resolved (links, '..'), its file name as written."""
    absolute = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def _collide(first, second):
    """Whether two outputs (a file, or a snapshot series ending in ``_iter_``) share a path."""
    if first == second:
        return True
    for series, single in ((first, second), (second, first)):
        if series.endswith("_iter_") and single.startswith(series) and \
                _SNAPSHOT_TAIL.fullmatch(single[len(series):]):
            return True
    return False


def check_outputs_distinct(config, log=None):
    """Raise a CaffeError naming both writers if two outputs of the job share a path."""
    seen = []
    for what, path in planned_outputs(config, log):
        resolved = _resolved(path)
        for other_what, other in seen:
            if _collide(resolved, other):
                raise CaffeError(
                    f"{config.source}: the {other_what} and the {what} would both be written "
                    f"to {path}*: one would overwrite the other; give each model its own "
                    f"mct_param.aux_snapshot_prefix / primary_snapshot_prefix (and --log a "
                    f"file of its own)")
        seen.append((what, resolved))
