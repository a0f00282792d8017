"""One failing rank takes the whole job down, loudly and at once.

Left alone, a rank that raises (or returns an error code and exits) leaves
the other ranks blocked for ever in their next collective, and the launcher
waits with them.  Killed ranks are handled by the launcher itself (Hydra and
Open MPI tear the job down when a rank dies), so what remains is a rank that
ends by itself: an uncaught exception, in the main thread or in a helper
thread such as a data prefetcher, or a command that fails with an exit code.
Each prints which rank failed and why, then calls ``MPI_Abort``.
"""
import sys
import threading
import time
import traceback

_installed = {"world": None, "role": None}


def _mpi_if_running():
    """mpi4py.MPI if this process already initialised MPI, else None (never imports it)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return None
    return mpi


# Seconds between printing why and aborting: the launcher tears every process
# down on MPI_Abort and can drop output still in its pipes, which once lost
# the "rank 1 of 3: command failed" line of a failing job.
OUTPUT_GRACE_SECONDS = 0.5


def _abort(world, code, text):
    sys.stderr.write(text)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    time.sleep(OUTPUT_GRACE_SECONDS)
    world.Abort(code)


def set_rank_role(role):
    """Name what this rank does (e.g. "M_a's group, rank 0 of 1") in its abort message."""
    _installed["role"] = role


def _rank_header(world, what):
    role = f" ({_installed['role']})" if _installed["role"] else ""
    return (f"*** rank {world.Get_rank()} of {world.Get_size()}{role}: {what}; "
            f"aborting the MPI job\n")


def install_abort_on_error(world):
    """Make uncaught exceptions (any thread) print rank + traceback and abort ``world``."""
    if _installed["world"] is not None or world.Get_size() == 1:
        return
    _installed["world"] = world

    def abort_on_exception(kind, value, trace):
        text = "".join(traceback.format_exception(kind, value, trace))
        _abort(world, 1, _rank_header(world, "uncaught exception") + text)

    def abort_on_thread_exception(args):
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                  args.exc_traceback))
        where = f"uncaught exception in thread {args.thread.name if args.thread else '?'}"
        _abort(world, 1, _rank_header(world, where) + text)

    sys.excepthook = abort_on_exception
    threading.excepthook = abort_on_thread_exception


def abort_parallel_job(exit_code):
    """Abort the MPI job if this process is one of several ranks; otherwise do nothing.

    For commands that catch their own errors and return an exit code: exiting
    normally would leave the other ranks waiting in a collective.
    """
    mpi = _mpi_if_running()
    if mpi is None or not exit_code or mpi.COMM_WORLD.Get_size() == 1:
        return
    world = mpi.COMM_WORLD
    _abort(world, int(exit_code), _rank_header(world, f"command failed (exit code {exit_code})"))
