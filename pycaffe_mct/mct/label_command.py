"""``pycaffe_mct label_issues``: which labels of a set are probably wrong, and a page to look.

    pycaffe_mct label_issues --model M_p.prototxt --weights M_p.caffemodel \\
        [--aux-model M_a.prototxt --aux-weights M_a.caffemodel] \\
        --source noisy_lmdb | --list noisy.txt --root DIR/ \\
        --transform 'scale: 0.00390625' --out REPORT_DIR [--probs] [--write-cleaned drop]

writes label_issues.csv, summary.json, index.html (+ PNGs) and, if asked,
cleaned.txt into REPORT_DIR (see docs/label-issues.md).  ``mct_train
--label-issues DIR`` calls ``report_for_mct`` after training, with both models.
"""
import argparse
import os
import shutil

from ..data.sources import LMDBSource
from ..errors import CaffeError, OutputError
from ..proto import caffe_pb2
from ..proto_io import parse_prototxt, write_atomically
from ..solvers.log import default_writer
from . import label_report
from .label_issues import LabelIssues
from .label_page import write_page
from .label_scan import (DeployedModel, Ensemble, open_list, open_lmdb, record_key,
                         scan)

PROBS_FILE = "probs.npy"


def build_parser():
    parser = argparse.ArgumentParser(prog="pycaffe_mct label_issues",
                                     description="which labels of a set are probably wrong, and a page to look at them")
    parser.add_argument("--model", required=True, help="deploy prototxt of M_p (or any model)")
    parser.add_argument("--weights", required=True, help="its caffemodel")
    parser.add_argument("--aux-model", help="deploy prototxt of M_a (averaged with M_p)")
    parser.add_argument("--aux-weights", help="its caffemodel")
    parser.add_argument("--blob", help="output blob of probabilities or class scores "
                                       "(default: the net's only output)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--source", help="LMDB of Datums with the given labels")
    data.add_argument("--list", help="convert_imageset list file ('path label' lines)")
    parser.add_argument("--root", default="", help="folder the --list paths start from")
    parser.add_argument("--gray", action="store_true", help="read --list images as gray")
    parser.add_argument("--resize-height", type=int, default=0,
                        help="with --list: resize images to this height (0: keep)")
    parser.add_argument("--resize-width", type=int, default=0,
                        help="with --list: resize images to this width (0: keep)")
    parser.add_argument("--transform", default="",
                        help="TransformationParameter fields as in a data layer's "
                             "transform_param, e.g. 'scale: 0.00390625'")
    parser.add_argument("--out", required=True, help="report directory (replaced atomically)")
    parser.add_argument("--probs", action="store_true",
                        help="add each sample's class probabilities to the CSV")
    parser.add_argument("--write-cleaned", choices=("drop", "relabel"),
                        help="also write cleaned.txt: the list with suspects dropped or "
                             "relabelled to the suggested label")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per forward pass (default 64)")
    parser.add_argument("--top", type=int, default=400,
                        help="thumbnails on the page: the lowest-scoring ~TOP/K of each class")
    return parser


def label_issues_main(argv):
    args = build_parser().parse_args(argv)
    if bool(args.aux_model) != bool(args.aux_weights):
        raise CaffeError("--aux-model and --aux-weights go together")
    if args.batch_size <= 0 or args.top < 0:
        raise CaffeError("--batch-size must be positive and --top not negative")
    label_report.check_out_dir(args.out)
    models = [DeployedModel(args.model, args.weights, args.blob)]
    if args.aux_model:
        models.append(DeployedModel(args.aux_model, args.aux_weights, args.blob))
    ensemble = Ensemble(models)
    transform = parse_prototxt(args.transform, caffe_pb2.TransformationParameter(),
                               "--transform")
    if args.source:
        source = open_lmdb(args.source, transform)
    else:
        source = open_list(args.list, args.root, transform, not args.gray,
                           args.resize_height, args.resize_width)
    issues = write_report(source, ensemble, args.out, probs=args.probs,
                          cleaned=args.write_cleaned, batch_size=args.batch_size,
                          top=args.top, description=args.source or args.list)
    print(f"label_issues: {issues.is_issue.sum()} of {len(issues.labels)} labels flagged; "
          f"estimated noise rate {issues.noise_rate:.3f}; report in {args.out}")
    return 0


def write_report(source, ensemble, out, probs=False, cleaned=None, batch_size=64, top=400,
                 description="", progress=None):
    """Score ``source`` with ``ensemble`` and write the report to ``out``; returns the
    LabelIssues."""
    label_report.check_out_dir(out)
    staging = label_report.temporary_dir(out)
    try:
        per_class = -(-top // ensemble.num_classes)       # ceil: ~top in all
        scores, labels, suspects = scan(source, ensemble, os.path.join(staging, PROBS_FILE),
                                        batch_size, per_class, progress=progress)
        issues = LabelIssues(scores, labels)
        _write_files(staging, issues, source, scores if probs else None, cleaned,
                     suspects.thumbnails(), {"source": description,
                                             "models": ensemble.describe()})
        del scores
        os.remove(os.path.join(staging, PROBS_FILE))
        label_report.publish(staging, out)
    except OSError as exc:                  # a full disk, say: one line, the old report kept
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"{out}: cannot write the label-issue report: {exc.strerror or exc}"
                          f"; the previous report, if any, is kept") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        source.close()
    return issues


def _write_files(directory, issues, source, probs, cleaned, thumbnails, inputs):
    def keys(index):
        return record_key(source, index)
    label_report.write_csv(os.path.join(directory, "label_issues.csv"), issues, keys, probs)
    if cleaned:
        write_atomically(os.path.join(directory, "cleaned.txt"),
                         label_report.cleaned_list(issues, keys, isinstance(source, LMDBSource),
                                                   cleaned))
    write_page(directory, issues, thumbnails, keys, inputs)
    label_report.write_summary(os.path.join(directory, label_report.REPORT_MARKER),
                               label_report.summary(issues, inputs))


# ---- mct_train --label-issues ------------------------------------------------------

def report_for_mct(trainer, out):
    """The report for the MCT job's noisy set with both trained models: M_p's deploy
    files, and M_a's final snapshot under a deploy net derived as M_p's is."""
    from .trainer import AUX, CALIBRATE, deploy_net_param
    config = trainer.config
    # In the grouped layout this rank holds M_p alone: M_a's net comes from its solver
    # file, and its final weights from the snapshot its group wrote at max_iter.
    primary = DeployedModel(*config.deploy_paths())
    aux_prefix = config.solvers[AUX][0].snapshot_prefix
    aux_prototxt = aux_prefix + "_deploy.prototxt"
    data_shape = primary.net.blobs[primary.input].shape
    write_atomically(aux_prototxt, str(deploy_net_param(
        config, config.stage_param(AUX, CALIBRATE), data_shape)))
    aux_weights = f"{aux_prefix}_iter_{config.max_iter}.caffemodel"
    if not os.path.isfile(aux_weights):
        raise CaffeError(f"--label-issues needs M_a's final snapshot {aux_weights}, which the "
                         f"aux solver did not write (snapshot_after_train: false?)")
    ensemble = Ensemble([primary, DeployedModel(aux_prototxt, aux_weights)])
    layer = config.mct.noisy_data
    if layer.HasField("image_data_param"):
        p = layer.image_data_param
        source = open_list(p.source, p.root_folder, layer.transform_param, p.is_color,
                           p.new_height, p.new_width)
    else:
        source = open_lmdb(layer.data_param.source, layer.transform_param)
    description = f"{config.source}: mct_param.noisy_data"
    issues = write_report(source, ensemble, out, description=description)
    default_writer().info(f"[MCT] label issues: {issues.is_issue.sum()} of "
                          f"{len(issues.labels)} noisy labels flagged (estimated noise rate "
                          f"{issues.noise_rate:.3f}); report in {out}", "mct_train:0")
    return issues
