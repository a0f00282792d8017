"""Mutual Calibration Training: sample selection (``selection``), the two-model
trainer (``trainer``) and the ``mct_train`` command (``pycaffe_mct.commands.mct_train``)."""
