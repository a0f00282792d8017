"""The ``pycaffe_mct`` command (Caffe's ``caffe`` tool) and ``mct_train``.

``pycaffe_mct <command> [flags]`` looks the command up in ``COMMANDS`` and
imports its module only then, so ``pycaffe_mct time`` never pays for MPI or the
data tools.  Each command module owns its flags and returns an exit code.
"""
import importlib
import sys

from . import __version__
from .errors import CaffeError

COMMANDS = {
    "train": ("pycaffe_mct.commands.train", "train_main", "train or fine-tune a model"),
    "test": ("pycaffe_mct.commands.train", "test_main", "score a model on test batches"),
    "time": ("pycaffe_mct.commands.timing", "time_main",
             "per-layer host and modelled core-group timings"),
    "scale": ("pycaffe_mct.commands.scale", "scale_main",
              "predict training time on N Sunway core groups"),
    "label_issues": ("pycaffe_mct.mct.label_command", "label_issues_main", "find wrong labels"),
    "export": ("pycaffe_mct.export.commands", "export_main", "write a net as an ONNX model"),
}


PYTHON_LAYERS_FLAG = "--python-layers"


def take_python_layers_flag(argv):
    """``argv`` without ``--python-layers``; the flag, if present, turns Python layers on
    (through the environment, so MPI ranks and workers started from here agree)."""
    if PYTHON_LAYERS_FLAG not in argv:
        return list(argv)
    from .layers.python import set_python_layers
    set_python_layers(True)
    return [arg for arg in argv if arg != PYTHON_LAYERS_FLAG]


def _usage():
    lines = ["usage: pycaffe_mct <command> [flags]  |  pycaffe_mct --version", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    lines += ["", "pycaffe_mct <command> --help shows a command's flags.",
              f"{PYTHON_LAYERS_FLAG} (any command, and mct_train) allows type: \"Python\" "
              f"layers, which run the code of the module a prototxt names."]
    return "\n".join(lines)


def run_command(function, argv):
    """Run a command; a CaffeError becomes one clear line on stderr and exit code 1."""
    try:
        code = function(argv) or 0
    except CaffeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    if code:
        # One MPI rank exiting alone would leave the others waiting in a collective.
        from .parallel.faults import abort_parallel_job
        abort_parallel_job(code)
    return code


def main(argv=None):
    argv = take_python_layers_flag(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"pycaffe_mct {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"unknown command '{argv[0]}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[argv[0]]
    function = getattr(importlib.import_module(module_name), function_name)
    return run_command(function, argv[1:])


def mct_train_main(argv=None):
    """``mct_train --solver S``: the trainer; with an MCT section it trains both models."""
    argv = take_python_layers_flag(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module("pycaffe_mct.commands.mct_train")
    return run_command(module.mct_train_main, argv)


if __name__ == "__main__":
    sys.exit(main())
