"""The Sunway scaling model: predicted training time on N SW26010 core groups.

``model`` holds the cost of one iteration (compute from the core-group
emulator's plan, ring allreduce, MCT's allgather, I/O), ``paper`` the paper's
figures and the comparison with them, ``report`` tables and plots, and
``pycaffe_mct.commands.scale`` the ``pycaffe_mct scale`` command.
"""
