"""matplotlib for the PNG plots, imported only when a plot is drawn: it is the optional
``plot`` extra, and a missing install says how to add it."""
import io

from .errors import missing_dependency
from .proto_io import write_atomically


def pyplot():
    """``matplotlib.pyplot`` on the Agg back end (files only, no display needed)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise missing_dependency("Plotting", "plot", exc) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(figure, path, **savefig_options):
    """Render ``figure`` to PNG in memory, write it atomically and release the figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_options)
    write_atomically(path, buffer.getvalue())
    pyplot().close(figure)
