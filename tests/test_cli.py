"""What a new user types first: the version, ``python -m``, and every command's --help."""
import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pycaffe_mct
from pycaffe_mct import cli

REPO = Path(__file__).resolve().parents[1]
# setup.py's console scripts other than ``pycaffe_mct`` itself (its commands come from COMMANDS).
SCRIPTS = ["pycaffe_mct.cli:mct_train_main", "pycaffe_mct.tools.convert_imageset:main",
           "pycaffe_mct.tools.compute_image_mean:main", "pycaffe_mct.tools.draw_net:main",
           "pycaffe_mct.tools.make_digits_dataset:main", "pycaffe_mct.tools.parse_log:main",
           "pycaffe_mct.tools.plot_training_log:main"]


def test_setup_declares_exactly_these_scripts():
    declared = re.findall(r'"[\w_]+=(pycaffe_mct[\w.]*:\w+)"', (REPO / "setup.py").read_text())
    assert sorted(declared) == sorted(SCRIPTS + ["pycaffe_mct.cli:main"])


def test_version_is_printed_and_is_setups(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"pycaffe_mct {pycaffe_mct.__version__}\n"
    assert 'version=_assigned_string(PACKAGE / "__init__.py", "__version__")' in \
        (REPO / "setup.py").read_text()


def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "pycaffe_mct", "--version"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"pycaffe_mct {pycaffe_mct.__version__}\n")


def _help_of(function, argv, capsys, monkeypatch):
    """The --help text of a command and the parser that printed it."""
    printed = []
    original = argparse.ArgumentParser.print_help
    monkeypatch.setattr(argparse.ArgumentParser, "print_help",
                        lambda self, file=None: (printed.append(self), original(self, file)))
    with pytest.raises(SystemExit) as exit_info:
        function(argv + ["--help"])
    assert exit_info.value.code == 0 and len(printed) == 1
    return capsys.readouterr().out, printed[0]


def _commands():
    yield from ((f"pycaffe_mct {name}", "pycaffe_mct.cli:main", [name]) for name in cli.COMMANDS)
    yield from ((script.split(":")[0].rsplit(".", 1)[-1], script, []) for script in SCRIPTS)


@pytest.mark.parametrize("name,script,argv", list(_commands()), ids=lambda v: str(v))
def test_help_is_plain_text_with_every_flag_explained(name, script, argv, capsys, monkeypatch):
    module, function = script.split(":")
    text, parser = _help_of(getattr(importlib.import_module(module), function), argv,
                            capsys, monkeypatch)
    assert "``" not in text and not re.search(r"leveldb|https?://", text, re.IGNORECASE), text
    unexplained = [action.dest for action in parser._actions
                   if action.help is None and not isinstance(action, argparse._HelpAction)]
    assert unexplained == [], f"{name}: flags without a help string"
