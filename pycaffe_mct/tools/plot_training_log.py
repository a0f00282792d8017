"""``plot_training_log LOG OUT.png [--x iters|seconds]``: loss, accuracy and learning rate.

Reads a Caffe or pycaffe_mct training log with ``parse_log`` and draws three
panels against iterations (or seconds since "Solving"): train and test losses,
test accuracies, and the learning rate.  Caffe's ``plot_training_log.py.example``
draws one of these per call; one picture with all three is what one looks at.
"""
import argparse
import os
import sys

from ..cli import run_command
from ..errors import CaffeError
from ..plots import pyplot, save_png
from .parse_log import parse_log

_X_COLUMNS = {"iters": ("NumIters", "iterations"), "seconds": ("Seconds", "seconds")}


def _series(rows, x_column, name):
    points = [(row[x_column], row[name]) for row in rows if name in row]
    return [p[0] for p in points], [p[1] for p in points]


def _output_names(rows):
    names = []
    for row in rows:
        names += [k for k in list(row)[3:] if k not in names]
    return names


def plot_training_log(log_path, image_path, x_axis="iters"):
    """Draw the log's curves into ``image_path`` (PNG); returns the panels drawn."""
    x_column, x_label = _X_COLUMNS[x_axis]
    train, test = parse_log(log_path)
    figure, (loss_axes, accuracy_axes, rate_axes) = pyplot().subplots(3, 1, figsize=(7, 9),
                                                                    sharex=True)
    for label, rows in (("train", train), ("test", test)):
        for name in _output_names(rows):
            axes = accuracy_axes if "acc" in name.lower() else loss_axes
            xs, ys = _series(rows, x_column, name)
            axes.plot(xs, ys, marker="." if label == "test" else None,
                      label=f"{label} {name}")
    xs, ys = _series(train or test, x_column, "LearningRate")
    # A row's rate holds until the next row: step policies show as the steps they are.
    rate_axes.step(xs, ys, where="post", color="black")
    for axes, title in ((loss_axes, "loss"), (accuracy_axes, "accuracy"),
                        (rate_axes, "learning rate")):
        axes.set_ylabel(title)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
    rate_axes.set_xlabel(x_label)
    loss_axes.set_title(os.path.basename(log_path))
    figure.tight_layout()
    save_png(figure, image_path, dpi=90)
    return ["loss", "accuracy", "learning rate"]


def run(argv):
    parser = argparse.ArgumentParser(prog="plot_training_log",
                                     description="Plot loss, accuracy and learning rate "
                                                 "from a Caffe training log.")
    parser.add_argument("logfile_path", help="a Caffe or pycaffe_mct training log")
    parser.add_argument("image_path", help="where to write the PNG")
    parser.add_argument("--x", choices=sorted(_X_COLUMNS), default="iters",
                        help="horizontal axis: iterations or seconds")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.logfile_path):
        raise CaffeError(f"{args.logfile_path}: no such log file")
    plot_training_log(args.logfile_path, args.image_path, args.x)
    return 0


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
