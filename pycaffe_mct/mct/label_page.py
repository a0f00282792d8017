"""index.html of a label-issue report: a page to browse offline, with no script at all.

The top suspects are a grid of thumbnails (``thumbs/<index>.png``) with the
given -> suggested label and the score; the filters per given class and
"issues only" are radio buttons and a check box whose ``:checked`` state hides
cards through CSS sibling selectors, so the page needs neither JavaScript nor
network access.  Beside the grid: the estimated transition matrix as
``transition_matrix.png`` (drawn with Pillow) and the per-class noise rates.
"""
import html
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MATRIX_PNG = "transition_matrix.png"
THUMBS_DIR = "thumbs"

STYLE = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
.filters label { margin-right: .6em; padding: .1em .4em; border: 1px solid #aaa;
  border-radius: 3px; cursor: pointer; }
.filters input { margin-right: .1em; }
.layout { margin-top: .8em; display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, 104px); gap: 8px;
  flex: 1 1 560px; }
.card { border: 1px solid #ccc; padding: 4px; text-align: center; font-size: 12px; }
.card.issue { border-color: #c0392b; background: #fdecea; }
.card img { width: 96px; height: 96px; image-rendering: pixelated; }
.side { flex: 0 1 420px; }
.side img { max-width: 100%; }
table.rates td, table.rates th { padding: 1px 6px; text-align: right; }
.bar { display: inline-block; height: 10px; background: #c0392b; }
"""


def write_page(directory, issues, thumbnails, keys, inputs):
    """Write index.html, its thumbnails and the matrix PNG into ``directory``."""
    os.makedirs(os.path.join(directory, THUMBS_DIR), exist_ok=True)
    for index, picture in thumbnails.items():
        Image.fromarray(picture).save(os.path.join(directory, THUMBS_DIR, f"{index}.png"))
    matrix_picture(issues.transition).save(os.path.join(directory, MATRIX_PNG))
    shown = sorted(thumbnails, key=lambda i: (issues.quality[i], i))
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(page_html(issues, shown, keys, inputs))


def page_html(issues, shown, keys, inputs):
    """The page's text; ``shown`` are the record indices with thumbnails, most suspect first."""
    classes = range(issues.num_classes)
    style = STYLE + "".join(
        f"#given-{c}:checked ~ .layout .card:not(.given-{c}) {{ display: none; }}\n"
        for c in classes) + "#issues-only:checked ~ .layout .card:not(.issue) { display: none; }\n"
    radios = "".join(
        f'<input type="radio" name="given" id="given-{c}"><label for="given-{c}">{c}</label>'
        for c in classes)
    source = html.escape(str(inputs.get("source", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Label issues: {source}</title>
<style>{style}</style></head>
<body>
<h1>Label issues</h1>
<p>{source}: {len(issues.labels)} samples, {int(issues.is_issue.sum())} flagged as issues;
estimated noise rate {issues.noise_rate:.1%}. Rule: {html.escape(issues.rule)}.
Full list: <a href="label_issues.csv">label_issues.csv</a>,
estimates: <a href="summary.json">summary.json</a>.</p>
<main class="filters">
<!-- The inputs are siblings of .layout: their :checked state filters it through CSS. -->
<input type="radio" name="given" id="given-all" checked><label for="given-all">all</label>
given label: {radios}
<input type="checkbox" id="issues-only"><label for="issues-only">issues only</label>
<div class="layout">
<div class="grid" id="suspects">
{"".join(_card(issues, index, keys) for index in shown)}
</div>
<div class="side">
<h2>Transition matrix</h2>
<p>T[i, j] = P(given j | true i); rows: true class, columns: given label.</p>
<img id="matrix" src="{MATRIX_PNG}" alt="estimated noise transition matrix">
<h2>Noise rate per given label</h2>
{_rates_table(issues)}
</div>
</div>
</main>
</body></html>
"""


def _card(issues, index, keys):
    given, suggested = int(issues.labels[index]), int(issues.suggested[index])
    flagged = " issue" if issues.is_issue[index] else ""
    key = html.escape(keys(index), quote=True)
    return (f'<div class="card given-{given}{flagged}" title="#{index} {key}">'
            f'<img src="{THUMBS_DIR}/{index}.png" alt="{key}"><br>'
            f'{given} &rarr; {suggested}<br>{_score(issues.quality[index])}</div>\n')


def _score(quality):
    """Three decimals, or two significant digits below 0.001 (the suspects' range)."""
    return f"{quality:.3f}" if quality >= 0.001 else f"{quality:.1e}"


def _rates_table(issues):
    counts = np.bincount(issues.labels, minlength=issues.num_classes)
    flagged = np.bincount(issues.labels, weights=issues.is_issue, minlength=issues.num_classes)
    rows = "".join(
        f"<tr><td>{c}</td><td>{counts[c]}</td><td>{int(flagged[c])}</td>"
        f"<td>{rate:.1%}</td><td style='text-align:left'>"
        f"<span class='bar' style='width:{round(100 * rate)}px'></span></td></tr>"
        for c, rate in enumerate(issues.per_class_rate))
    return ("<table class='rates'><tr><th>label</th><th>samples</th><th>flagged</th>"
            f"<th>noise</th><th></th></tr>{rows}</table>")


def matrix_picture(matrix):
    """A heat map of a K x K matrix in [0, 1] (white 0, dark red 1), values written in
    the cells while they fit, class numbers on both axes."""
    classes = len(matrix)
    cell = max(6, min(40, 640 // max(classes, 1)))
    margin = 28
    size = margin + classes * cell + 4
    picture = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for i in range(classes):
        for j in range(classes):
            value = float(np.clip(matrix[i][j], 0, 1))
            shade = (255 - round(63 * value), round(255 * (1 - value)), round(255 * (1 - value)))
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=shade, outline=(220,) * 3)
            if cell >= 30:
                draw.text((x + 3, y + cell // 3), f"{value:.2f}",
                          fill="white" if value > 0.5 else "black", font=font)
        if cell >= 12:
            draw.text((margin + i * cell + cell // 3, 8), str(i), fill="black", font=font)
            draw.text((6, margin + i * cell + cell // 3), str(i), fill="black", font=font)
    return picture
