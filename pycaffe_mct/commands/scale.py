"""``pycaffe_mct scale``: predicted training time of a net on N Sunway core groups.

``pycaffe_mct scale --model NET.prototxt --batch B --images I --epochs E --cgs 1,32,64``
prints, per core-group count, the seconds of one iteration split into
compute / allreduce / allgather / io and the run's total hours; ``--json``
prints the same rows as JSON.  ``--paper`` runs the paper's experiments
(Table 1, Fig. 3, Fig. 4) on AlexNet and compares them with its figures.
"""
import argparse
import json
import os

from ..errors import CaffeError
from ..scaling import paper, report
from ..scaling.compute import profile_compute
from ..scaling.model import MCT_LAYOUTS, MCTSpec, ScalingModel, Workload

DEFAULT_CGS = "1,32,64,128,256,512"
# The repository's AlexNet (models/ sits next to the package in a checkout).
PAPER_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "models", "alexnet", "deploy.prototxt")


def _counts(text):
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--cgs {text!r}: expected positive integers separated by commas")
    return counts


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pycaffe_mct scale",
        description="Predict data-parallel training time on Sunway SW26010 core groups.")
    parser.add_argument("--model", help="deploy prototxt (Input layers) of the net to train")
    parser.add_argument("--batch", type=int, default=paper.GLOBAL_BATCH,
                        help="global mini-batch, split over the core groups (default 128)")
    parser.add_argument("--images", type=float, help="training images per epoch")
    parser.add_argument("--epochs", type=float, help="epochs")
    parser.add_argument("--cgs", default=DEFAULT_CGS, type=_counts,
                        help=f"core-group counts (default {DEFAULT_CGS})")
    parser.add_argument("--mct", action="store_true",
                        help="model MCT's calibration iterations: two models, the confidence "
                             "allgather and the soft-target exchange")
    parser.add_argument("--layout", choices=MCT_LAYOUTS, default="grouped",
                        help="with --mct: M_p and M_a on two halves of the CGs (grouped, the "
                             "paper's) or both models on every CG (replicated)")
    parser.add_argument("--aux-model", help="with --mct: deploy prototxt of M_a "
                                            "(default: the same net as --model)")
    parser.add_argument("--no-prefetch", action="store_true",
                        help="read each batch after the previous iteration, not during it")
    parser.add_argument("--efficiency", type=float, default=paper.PAPER_COMPUTE_EFFICIENCY,
                        help="fraction of the emulator's modelled core-group rate the software "
                             f"sustains (default {paper.PAPER_COMPUTE_EFFICIENCY}, derived from "
                             "the paper; swDNN-class kernels: about 1.2)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    parser.add_argument("--paper", action="store_true",
                        help="reproduce the paper's Table 1, Fig. 3 and Fig. 4 "
                             "(AlexNet; --model defaults to models/alexnet/deploy.prototxt)")
    return parser


def scale_main(argv):
    args = build_parser().parse_args(argv)
    if args.efficiency <= 0:
        raise CaffeError(f"--efficiency {args.efficiency}: must be positive")
    model = ScalingModel(compute_efficiency=args.efficiency, prefetch=not args.no_prefetch)
    if args.paper:
        return _paper(args, model)
    missing = [flag for flag in ("model", "images", "epochs") if getattr(args, flag) is None]
    if missing:
        raise CaffeError("scale needs " + ", ".join(f"--{flag}" for flag in missing)
                         + " (or --paper)")
    compute, n_bytes = profile_compute(args.model, args.batch)
    workload = Workload(compute, n_bytes, args.batch, args.images, args.epochs,
                        mct=_mct_spec(args, compute) if args.mct else None)
    rows = model.rows(workload, args.cgs)
    if args.json:
        print(json.dumps({"model": args.model, "global_batch": args.batch,
                          "images": args.images, "epochs": args.epochs,
                          "param_bytes": n_bytes, "iterations": workload.iterations,
                          "compute_efficiency": args.efficiency,
                          "rows": [row.as_dict() for row in rows]}, indent=1))
    else:
        print(f"{args.model}: {n_bytes / 1e6:.1f} MB of parameters, "
              f"{compute.flops_per_image / 1e9:.3g} GFLOP per image (forward+backward), "
              f"global batch {args.batch}, {workload.iterations:.0f} iterations, "
              f"compute efficiency {args.efficiency:g}")
        print(report.format_rows([row.as_dict() for row in rows]))
    if args.plots:
        scaling, breakdown = report.plot_paths(args.plots, "scaling.png", "breakdown.png")
        report.plot_scaling(scaling, rows, title=os.path.basename(args.model))
        report.plot_breakdown(breakdown, rows)
    return 0


def _mct_spec(args, compute):
    """What the MCT calibration step trains, read off the profiled nets."""
    aux_compute, aux_bytes = (profile_compute(args.aux_model, args.batch) if args.aux_model
                              else (None, None))
    return MCTSpec(layout=args.layout, classes=compute.classes,
                   forward_fraction=compute.forward_fraction,
                   aux_compute=aux_compute, aux_param_bytes=aux_bytes)


def _paper(args, model):
    path = args.model or PAPER_MODEL
    if not os.path.exists(path):
        raise CaffeError(f"{path}: no such file; give AlexNet's deploy prototxt with --model")
    # The paper's Caffe convolved by im2col + GEMM: model that, not our faster paths.
    compute, n_bytes = profile_compute(path, paper.GLOBAL_BATCH, im2col_only=True)
    results, rows = paper.reproduce(model, compute, n_bytes)
    print(json.dumps(results, indent=1) if args.json else report.format_paper(results))
    if args.plots:
        names = ("table1_scaling.png", "table1_breakdown.png", "fig4_communication.png",
                 "fig3_prefetch.png")
        scaling, breakdown, comm, prefetch = report.plot_paths(args.plots, *names)
        table1_rows = rows[:1 + len(paper.TABLE1_HOURS)]
        report.plot_scaling(scaling, table1_rows, paper.TABLE1_HOURS,
                            "AlexNet, batch 128, 90 epochs of 1M images")
        report.plot_breakdown(breakdown, table1_rows)
        fig4 = results["fig4"]
        report.plot_lines(comm, fig4, list(fig4[0])[1:], "seconds per iteration",
                          "gradient allreduce and confidence allgather")
        report.plot_lines(prefetch, results["fig3"], ["with_prefetch", "without_prefetch"],
                          "seconds per mini-batch",
                          "AlexNet mini-batch time, with and without prefetch")
    return 0
