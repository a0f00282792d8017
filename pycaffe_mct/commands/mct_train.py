"""``mct_train``: Mutual Calibration Training from a solver file with an ``mct_param``.

    mct_train --solver models/mct_digits/solver.prototxt
    mct_train --solver S --snapshot <primary prefix>_iter_N.solverstate   # resume both
    mpiexec -n 4 mct_train --solver S                         # M_p and M_a on two groups
    mpiexec -n 4 mct_train --solver S --layout replicated     # both models on every rank

A solver file without an ``mct_param`` section is trained as plain Caffe
(``pycaffe_mct train``).  Under mpiexec (world size > 1) the parallel package
is imported; the layouts are described in ``mct.layouts``.
"""
import argparse
import sys

from ..diff_release import add_release_diffs_flag
from ..kernel_cache import announce_compilation
from ..proto import caffe_pb2
from ..proto_io import read_prototxt
from ..mct.layouts import LAYOUTS
from ..solvers.log import default_writer, format_number, log_to_file, logged_command


def _has_mct_section(solver_file):
    return read_prototxt(solver_file, caffe_pb2.SolverParameter()).HasField("mct_param")


def _summary(name, outputs):
    return ", ".join(f"{key} = {format_number(value[0] if value.size == 1 else value.mean())}"
                     for key, value in outputs.items()) or f"{name}: no test outputs"


@logged_command
def mct_train_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mct_train", description="Mutual Calibration Training from a solver file with an "
                                      "mct_param; without one, plain training as 'train'.")
    parser.add_argument("--solver", required=True, help="solver prototxt with an mct_param")
    parser.add_argument("--snapshot", help="M_p's .solverstate to resume both models from "
                                           "(M_a's is found by its prefix and iteration)")
    parser.add_argument("--log", help="also append the trainer's log to this file")
    parser.add_argument("--label-issues", metavar="DIR",
                        help="after training, write the label-issue report of the noisy set "
                             "(both models) to DIR")
    parser.add_argument("--layout", choices=LAYOUTS, default="grouped",
                        help="under mpiexec: grouped (M_p and M_a on two groups of ranks, "
                             "the paper's; default) or replicated (both models on every "
                             "rank)")
    add_release_diffs_flag(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parser.parse_known_args(argv)
    if not _has_mct_section(args.solver):
        from .train import train_main
        return train_main(argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.label_issues:
        from ..mct.label_report import check_out_dir
        check_out_dir(args.label_issues)        # before training, not after
    from ..mct.outputs import check_outputs_distinct
    from ..mct.trainer import MCTTrainer
    from ..parallel import world_if_launched
    world = world_if_launched()
    trainer = MCTTrainer(args.solver, world, layout=args.layout,
                         release_diffs=args.release_diffs)
    check_outputs_distinct(trainer.config, args.log)
    if args.log:
        log_to_file(args.log)
    announce_compilation(default_writer())
    mct_result = trainer.train(args.snapshot)
    if args.label_issues and trainer.rank == 0:
        from ..mct.label_command import report_for_mct
        report_for_mct(trainer, args.label_issues)
    log = default_writer()
    log.info(f"[MCT] M_p (MCT) final test: {_summary('M_p', mct_result)}", "mct_train:0")
    if trainer.config.mct.compare_noise_only:
        baseline = trainer.noise_only_baseline()
        log.info(f"[MCT] M_p (MCT) final test: {_summary('M_p', mct_result)}", "mct_train:0")
        log.info(f"[MCT] noise-only baseline final test: {_summary('baseline', baseline)}",
                 "mct_train:0")
    return 0

