"""Mutual Calibration Training: sample selection (``selection``), the two-model
trainer (``trainer``) and the ``mct_train`` command (``commands``)."""
