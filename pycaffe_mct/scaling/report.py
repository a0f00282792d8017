"""Text tables and PNG plots of the scaling model's rows."""
import os

from ..plots import pyplot, save_png
from . import paper

TERMS = ("compute", "allreduce", "allgather", "exchange", "io")


def format_columns(rows, columns):
    """A right-aligned table of dict rows; ``columns`` are (header, key, format spec)."""
    widths = [max(len(header), 9) for header, _, _ in columns]
    lines = [" ".join(f"{header:>{w}}" for (header, _, _), w in zip(columns, widths))]
    for row in rows:
        lines.append(" ".join(f"{format(row[key], spec):>{w}}"
                              for (_, key, spec), w in zip(columns, widths)))
    return "\n".join(lines)


def format_rows(rows):
    """The per-core-group-count table of ``ScalingRow.as_dict()`` rows."""
    return format_columns(rows, [("CGs", "cgs", "d"), ("img/CG", "images_per_cg", ".4g"),
                                 ("s/iter", "seconds_per_iteration", ".4f"),
                                 *[(term, term, ".4f") for term in TERMS],
                                 ("hours", "total_hours", ".2f"),
                                 ("effic.", "efficiency", ".1%")])


def format_table1(rows):
    """Model vs paper, from ``ComparedRow.as_dict()`` rows; a row outside the tolerance
    is followed by what would have to change."""
    table = format_columns(rows, [("CGs", "cgs", "d"), ("model h", "model_hours", ".1f"),
                                  ("paper h", "paper_hours", ".1f"), ("ratio", "ratio", ".2f"),
                                  ("128/CG reading h", "per_cg_batch_reading_hours", ".1f")])
    notes = [f"  {row['cgs']} CGs: {row['miss']}" for row in rows if row["miss"]]
    return "\n".join([table, *notes])


def format_dict_rows(rows, digits=4):
    """A table of dict rows sharing keys, the first an integer count."""
    keys = list(rows[0])
    return format_columns(rows, [(keys[0], keys[0], "d"),
                                 *[(key, key, f".{digits}f") for key in keys[1:]]])


def _save(figure, path):
    save_png(figure, path, dpi=110, bbox_inches="tight")


def plot_scaling(path, rows, paper_hours=None, title="training time"):
    """Hours against core groups (log-log), with ideal linear scaling from the first row."""
    figure, axes = pyplot().subplots(figsize=(6, 4))
    cgs = [r.cost.cgs for r in rows]
    axes.loglog(cgs, [r.hours for r in rows], "o-", label="model")
    axes.loglog(cgs, [rows[0].hours * cgs[0] / p for p in cgs], ":", label="linear")
    if paper_hours:
        axes.loglog(list(paper_hours), list(paper_hours.values()), "s", label="paper, Table 1")
    axes.set_xlabel("core groups")
    axes.set_ylabel("hours")
    axes.set_title(title)
    axes.legend()
    _save(figure, path)


def plot_breakdown(path, rows, title="where an iteration's time goes"):
    """Stacked bars: each term's share of one iteration, per core-group count."""
    figure, axes = pyplot().subplots(figsize=(6, 4))
    labels = [str(r.cost.cgs) for r in rows]
    bottom = [0.0] * len(rows)
    for term in TERMS:
        shares = [r.as_dict()[term] / r.cost.seconds for r in rows]
        axes.bar(labels, shares, bottom=bottom, label=term)
        bottom = [b + v for b, v in zip(bottom, shares)]
    axes.set_xlabel("core groups")
    axes.set_ylabel("share of one iteration")
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def plot_lines(path, rows, keys, ylabel, title):
    """Several columns of dict rows against their first column ("cgs"), log-log."""
    figure, axes = pyplot().subplots(figsize=(6, 4))
    cgs = [r["cgs"] for r in rows]
    for key in keys:
        axes.loglog(cgs, [r[key] for r in rows], "o-", label=key)
    axes.set_xlabel("core groups")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    _save(figure, path)


def plot_paths(directory, *names):
    os.makedirs(directory, exist_ok=True)
    return [os.path.join(directory, name) for name in names]


def _hours_list(hours_by_count):
    return ", ".join(f"{p} CGs {hours:.1f} h" for p, hours in hours_by_count.items())


def _reduction_note(r):
    """Which figure would have to differ for the last row to fit, and by how much."""
    needed, assumed = r["required_reduction_rate"], r["reduce_bytes_per_s"]
    dma = r["dma_bytes_per_s"]
    text = (f"the ring adds {assumed / 1e9:.1f} GB/s of reduced data per CG (DMA "
            f"{dma / 1e9:g} GB/s / 3 bytes moved per byte reduced); ")
    if needed is None:
        text += f"no reduction rate brings {paper.LAST_CGS} CGs within {paper.TOLERANCE:.0%}"
    else:
        text += (f"{paper.LAST_CGS} CGs within {paper.TOLERANCE:.0%} needs {needed / 1e9:.1f} "
                 f"GB/s, i.e. DMA at {needed / assumed * dma / 1e9:.1f} GB/s "
                 f"({needed / assumed - 1:+.0%})")
    return (text + f"; with the additions free the row would be at "
            f"{r['ratio_with_free_reduction']:.2f} (re-anchored each time)")


def format_paper(r):
    """The paper report (``pycaffe_mct scale --paper``) from ``paper.reproduce``'s data."""
    below = r["below_half"]
    lines = [
        "== Assumptions",
        f"global batch 128 split over the CGs; {r['iterations']:.0f} iterations; "
        f"{r['param_bytes'] / 2 ** 20:.1f} MiB of parameters (paper: 233 MB)",
        f"emulator plan: {r['flops_per_image'] / 1e9:.2f} GFLOP/image (forward+backward) at "
        f"{r['plan_fraction_of_peak']:.0%} of a CG's peak (swDNN: 54% on convolution); "
        f"layers planned at 0 s: {', '.join(r['unplanned_layers']) or 'none'}",
        f"compute efficiency, stated once: {r['compute_efficiency']:g} of the plan's rate "
        f"= {r['compute_efficiency'] * r['plan_fraction_of_peak']:.1%} of peak; Table 1's "
        f"{paper.ANCHOR_CGS}-CG row alone implies {r['implied_efficiency']:.4f}",
        "",
        f"== Table 1 (AlexNet, Clothing1M, batch 128, 90 epochs); Titan X {paper.TITAN_X_HOURS:g} h",
        format_table1(r["table1"]),
        _reduction_note(r),
        "at swDNN's 54% of peak instead: " + _hours_list(r["swdnn_hours"]),
        "",
        "== The model out to TaihuLight's 40,960 nodes",
        format_rows(r["rows"]),
        (f"parallel efficiency first falls below 50% at {below['cgs']} CGs: compute "
         f"{below['compute']:.4f} s vs allreduce {below['allreduce']:.4f} s per iteration"
         if below else "parallel efficiency stays above 50%"),
        "keeping 128 images per CG instead (weak scaling): "
        + ", ".join(f"{p} CGs {e:.0%}" for p, e in r["weak_scaling_efficiency"].items()),
        "",
        "== Fig. 4: seconds of communication per iteration; allgather of AlexNet 128 and "
        "ResNet-50 32 samples per process",
        format_dict_rows(r["fig4"], 5),
        *[f"paper: {claim}: {'holds' if held else 'does NOT hold'} in the model"
          for claim, held in r["fig4_claims"].items()],
        "",
        "== Fig. 3: AlexNet seconds per mini-batch with and without prefetch",
        format_dict_rows(r["fig3"], 4),
    ]
    return "\n".join(lines)
