"""The command-line commands: ``train``/``test`` (``train``), ``mct_train``, ``scale``.

Each module owns its flags and returns an exit code; ``cli.COMMANDS`` imports a
command's module only when it runs.
"""
