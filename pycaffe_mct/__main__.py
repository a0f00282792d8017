"""``python -m pycaffe_mct <command>``: the ``pycaffe_mct`` command without its script."""
import sys

from .cli import main

sys.exit(main())
