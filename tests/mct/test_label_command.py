"""``pycaffe_mct label_issues`` end to end on a small set whose wrong labels are known.

The records are one-hot "images" (1 x 1 x K, pixel k = 255 for true class k);
the deploy nets are an InnerProduct with weights ``scale * I`` and a Softmax, so
each model's probabilities are known in closed form and the flipped labels are
exactly the ones a correct report flags.
"""
import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from test_mct_trainer import digits, write_job  # noqa: F401 (digits: a fixture)

from pycaffe_mct.cli import main, mct_train_main as main_mct
from pycaffe_mct.data import LMDBWriter, image_to_datum, key_for
from pycaffe_mct.layer import TEST
from pycaffe_mct.mct.label_report import CSV_COLUMNS
from pycaffe_mct.mct.label_scan import thumbnail
from pycaffe_mct.net import Net
from pycaffe_mct.tools._flags import ProgressBar

CLASSES, PER_CLASS = 4, 10
TRUE = np.repeat(np.arange(CLASSES), PER_CLASS)
GIVEN = TRUE.copy()
GIVEN[::5] = (TRUE[::5] + 1) % CLASSES          # 8 of 40 labels moved to the next class
DEPLOY = """name: "onehot"
layer {{ name: "data" type: "Input" top: "data"
        input_param {{ shape {{ dim: 1 dim: 1 dim: 1 dim: {width} }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "logits"
        inner_product_param {{ num_output: {classes} }} }}
"""
SOFTMAX = 'layer { name: "prob" type: "Softmax" bottom: "logits" top: "prob" }\n'



def _images():
    return [np.where(np.arange(CLASSES) == t, 255, 0).astype(np.uint8).reshape(1, CLASSES, 1)
            for t in TRUE]


def _model(directory, name, scale, classes=CLASSES, softmax=True):
    prototxt = directory / f"{name}.prototxt"
    prototxt.write_text(DEPLOY.format(width=CLASSES, classes=classes) + SOFTMAX * softmax)
    net = Net(str(prototxt), TEST)
    net.params["ip"][0].data[...] = scale * np.eye(classes, CLASSES)
    net.params["ip"][1].data[...] = 0
    net.save(str(directory / f"{name}.caffemodel"))
    return str(prototxt), str(directory / f"{name}.caffemodel")


def _expected_probs(scale):
    logits = scale * 255.0 * np.eye(CLASSES)[TRUE]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """An LMDB and a list file of the same 40 records, and two models."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    lines = []
    with LMDBWriter(str(root / "set_lmdb")) as writer:
        for i, (image, label) in enumerate(zip(_images(), GIVEN)):
            path = f"images/{i:03d}.png"
            Image.fromarray(image[:, :, 0]).save(root / path)
            lines.append(f"{path} {label}\n")
            writer.put(key_for(i, path), image_to_datum(image, label).SerializeToString())
    (root / "set.txt").write_text("".join(lines))
    return {"root": root, "primary": _model(root, "primary", 0.01),
            "aux": _model(root, "aux", 0.004), "three": _model(root, "three", 0.01, 3),
            "logits": _model(root, "logits", 0.01, softmax=False)}


def _run(labelled, out, *flags, model="primary"):
    prototxt, weights = labelled[model]
    return main(["label_issues", "--model", prototxt, "--weights", weights,
                 "--out", str(out), "--batch-size", "16"] + list(flags))


def _rows(out):
    with open(out / "label_issues.csv", newline="") as handle:
        return list(csv.reader(handle))


def test_lmdb_report_flags_the_moved_labels_and_relabels_them(labelled, tmp_path, capsys):
    out = tmp_path / "report"
    assert _run(labelled, out, "--source", str(labelled["root"] / "set_lmdb"), "--probs",
                "--write-cleaned", "relabel") == 0
    assert "8 of 40 labels flagged" in capsys.readouterr().out
    header, *rows = _rows(out)
    assert header == CSV_COLUMNS + [f"prob_{k}" for k in range(CLASSES)]
    assert len(rows) == 40
    quality = [float(r[4]) for r in rows]
    assert quality == sorted(quality)
    flagged = sorted(int(r[0]) for r in rows if r[5] == "1")
    assert flagged == list(np.flatnonzero(GIVEN != TRUE))
    probs = _expected_probs(0.01)
    for row in rows:
        index = int(row[0])
        assert row[1] == key_for(index, f"images/{index:03d}.png").decode()
        assert (int(row[2]), int(row[3])) == (GIVEN[index], TRUE[index])
        np.testing.assert_allclose([float(v) for v in row[6:]], probs[index], atol=2e-6)
        assert float(row[4]) == pytest.approx(probs[index, GIVEN[index]], abs=2e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 40 and summary["issues"] == 8
    assert summary["noise_rate"] == pytest.approx(0.2)
    assert summary["noise_rate_per_class"] == pytest.approx([0.2] * CLASSES)
    np.testing.assert_allclose(summary["transition_matrix"],
                               np.eye(4) * 0.8 + np.roll(np.eye(4), 1, axis=1) * 0.2,
                               atol=1e-12)
    assert summary["inputs"]["models"][0]["softmax_applied"] is False
    cleaned = (out / "cleaned.txt").read_text().splitlines()
    assert cleaned == [f"images/{i:03d}.png {t}" for i, t in enumerate(TRUE)]
    page = (out / "index.html").read_text()
    assert 'src="transition_matrix.png"' in page and "<script" not in page
    assert page.count('class="card ') == 40
    assert (out / "thumbs" / "0.png").is_file() and not (out / "probs.npy").exists()


def test_list_input_averages_both_models(labelled, tmp_path):
    out = tmp_path / "report"
    prototxt, weights = labelled["aux"]
    assert _run(labelled, out, "--list", str(labelled["root"] / "set.txt"), "--root",
                str(labelled["root"]) + "/", "--gray", "--aux-model", prototxt,
                "--aux-weights", weights, "--write-cleaned", "drop", "--top", "8") == 0
    header, *rows = _rows(out)
    assert header == CSV_COLUMNS
    average = (_expected_probs(0.01) + _expected_probs(0.004)) / 2
    for row in rows:
        index = int(row[0])
        assert row[1] == f"images/{index:03d}.png"
        assert float(row[4]) == pytest.approx(average[index, GIVEN[index]], abs=2e-6)
    cleaned = (out / "cleaned.txt").read_text().splitlines()
    assert cleaned == [f"images/{i:03d}.png {g}" for i, g in enumerate(GIVEN) if g == TRUE[i]]
    models = json.loads((out / "summary.json").read_text())["inputs"]["models"]
    assert [m["weights"] for m in models] == [labelled["primary"][1], weights]
    lowest_two = [index for given in range(CLASSES)            # CSV order: most suspect first
                  for index in [int(r[0]) for r in rows if int(r[2]) == given][:2]]
    assert sorted(f"{i}.png" for i in lowest_two) == sorted(os.listdir(out / "thumbs"))


def test_class_scores_that_are_not_probabilities_get_a_softmax(labelled, tmp_path):
    out = tmp_path / "report"
    assert _run(labelled, out, "--source", str(labelled["root"] / "set_lmdb"), "--probs",
                model="logits") == 0
    _, *rows = _rows(out)
    probs = _expected_probs(0.01)
    for row in rows:
        np.testing.assert_allclose([float(v) for v in row[6:]], probs[int(row[0])], atol=2e-6)
    models = json.loads((out / "summary.json").read_text())["inputs"]["models"]
    assert models[0]["blob"] == "logits" and models[0]["softmax_applied"] is True


def test_an_existing_report_is_replaced_whole(labelled, tmp_path):
    out = tmp_path / "report"
    source = ["--source", str(labelled["root"] / "set_lmdb")]
    assert _run(labelled, out, *source, "--write-cleaned", "drop") == 0
    assert _run(labelled, out, *source, "--top", "0") == 0
    assert not (out / "cleaned.txt").exists() and not os.listdir(out / "thumbs")
    assert sorted(os.listdir(tmp_path)) == ["report"]     # no staging directory left
    before = (out / "label_issues.csv").read_bytes()
    assert _run(labelled, out, *source, model="three") == 1          # fails while scoring
    assert (out / "label_issues.csv").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["report"]


@pytest.mark.parametrize("case,message", [
    ("missing source", "data source '.*nowhere' does not exist"),
    ("out is a file", "--out '.*' is a file"),
    ("out is not a report", "holds no label-issue report"),
    ("too few classes", r"set_lmdb', key 00000020_images/020.png: label 3 is outside the "
                        r"model's 3 classes"),
    ("aux classes differ", "class counts differ"),
    ("aux without weights", "--aux-model and --aux-weights go together"),
    ("image size", "input 'data' takes 1x1x4 images, the transformed records are 1x1x1"),
])
def test_bad_input_is_one_clear_error(labelled, tmp_path, capsys, case, message):
    out, source = tmp_path / "report", ["--source", str(labelled["root"] / "set_lmdb")]
    model = "primary"
    if case == "missing source":
        source = ["--source", str(tmp_path / "nowhere")]
    elif case == "out is a file":
        out.write_text("not a directory")
    elif case == "out is not a report":
        out.mkdir()
        (out / "holiday.jpg").write_text("keep me")
    elif case == "too few classes":
        model = "three"
    elif case == "aux classes differ":
        source += ["--aux-model", labelled["three"][0], "--aux-weights", labelled["three"][1]]
    elif case == "aux without weights":
        source += ["--aux-model", labelled["aux"][0]]
    else:
        source += ["--transform", "crop_size: 1"]
    assert _run(labelled, out, *source, model=model) == 1
    stderr = capsys.readouterr().err
    [error] = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in stderr
    assert __import__("re").search(message, error), error
    assert [name for name in os.listdir(tmp_path) if name != "report"] == []  # no staging


def test_thumbnails_show_bgr_as_rgb_and_stretch_float_pixels():
    bgr = np.zeros((3, 2, 4), np.uint8)
    bgr[0] = 255                                              # blue, in OpenCV's order
    picture = thumbnail(bgr, 8)
    assert picture.shape == (8, 8, 3)
    assert tuple(picture[4, 4]) == (0, 0, 255) and tuple(picture[0, 0]) == (128, 128, 128)
    ramp = np.linspace(-1, 3, 4, dtype=np.float32).reshape(1, 1, 4)
    np.testing.assert_array_equal(thumbnail(ramp, 4)[1, :, 0], [0, 85, 170, 255])  # row 1 of 4


def test_progress_to_a_redirected_stream_is_a_line_per_tenth():
    stream = io.StringIO()
    bar = ProgressBar(200, "records", stream)
    for done in range(0, 201, 16):
        bar.update(done)
    bar.finish(200)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[0] for line in lines] == \
        ["32/200", "48/200", "64/200", "80/200", "112/200", "128/200", "144/200", "160/200",
         "192/200", "200/200"]        # each first past a tenth (96 is still 4.8 tenths)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                  "--enable-logging=stderr", "--v=0", "--window-size=1200,2400"]
THUMB_GRAY = (128, 128, 128)                    # the thumbnails' canvas


def _chromium(page, tmp_path, *flags):
    """Load ``page`` in headless Chromium with a fresh profile; returns (stdout, stderr)."""
    import subprocess
    profile = tmp_path / f"profile{len(os.listdir(tmp_path))}"
    done = subprocess.run(["chromium", f"--user-data-dir={profile}"] + CHROMIUM_FLAGS
                          + list(flags) + [page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def _screenshot_colours(page, tmp_path, name):
    shot = tmp_path / f"{name}.png"
    _, log = _chromium(page, tmp_path, f"--screenshot={shot}")
    assert ":CONSOLE" not in log, log
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    return {colour: int(np.all(pixels == colour, axis=1).sum())
            for colour in (THUMB_GRAY, (205, 51, 51))}


@pytest.mark.slow
def test_the_page_loads_in_chromium_with_its_grid_matrix_and_filters(labelled, tmp_path):
    import shutil
    if shutil.which("chromium") is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    out = tmp_path / "report"
    assert _run(labelled, out, "--source", str(labelled["root"] / "set_lmdb")) == 0
    dom, log = _chromium(out / "index.html", tmp_path, "--dump-dom")
    assert ":CONSOLE" not in log, log                 # no console message of any kind
    assert dom.count('class="card given-') == 40 and 'id="matrix"' in dom
    everything = _screenshot_colours(out / "index.html", tmp_path, "all")
    assert everything[(205, 51, 51)] > 4 * 30 * 30    # the diagonal cells of 0.80 (PNG loaded)
    filtered = out / "given2.html"                    # the same page, filter 'given 2' chosen
    filtered.write_text((out / "index.html").read_text()
                        .replace('id="given-all" checked', 'id="given-all"')
                        .replace('id="given-2">', 'id="given-2" checked>'))
    only_two = _screenshot_colours(filtered, tmp_path, "given2")
    assert only_two[THUMB_GRAY] == pytest.approx(everything[THUMB_GRAY] / 4, rel=0.02)


def test_mct_train_refuses_a_report_path_that_is_a_file_before_training(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    solver = write_job(tmp_path, str(tmp_path / "no-data-needed"))
    assert main_mct(["--solver", str(solver), "--label-issues", str(tmp_path / "taken")]) == 1
    assert "--out '" in capsys.readouterr().err and not (tmp_path / "snap").exists()


@pytest.mark.slow
def test_mct_train_writes_the_report_of_its_noisy_set_with_both_models(tmp_path, digits):
    solver = write_job(tmp_path, digits)
    assert main_mct(["--solver", str(solver), "--label-issues", str(tmp_path / "issues")]) == 0
    snap = tmp_path / "snap"
    models = json.loads((tmp_path / "issues" / "summary.json").read_text())["inputs"]["models"]
    assert [(m["model"], m["weights"]) for m in models] == [
        (f"{snap}/primary_deploy.prototxt", f"{snap}/primary_deploy.caffemodel"),
        (f"{snap}/aux_deploy.prototxt", f"{snap}/aux_iter_12.caffemodel")]
    _, *rows = _rows(tmp_path / "issues")
    given = dict(line.rsplit(" ", 1) for line in open(f"{digits}/noisy.txt").read().splitlines())
    assert len(rows) == len(given)
    assert all(int(r[2]) == int(given[r[1].split("_", 1)[1]]) for r in rows)
