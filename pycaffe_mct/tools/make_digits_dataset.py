"""make_digits_dataset OUTDIR: the bundled demo data set with noisy labels.

scikit-learn ships 1797 real handwritten digits (8x8, gray levels 0..16).  We
scale them to 0..255, enlarge them to 20x20 (OpenCV-style bilinear) and centre
them in a 28x28 frame as MNIST does, then split them (seeded): a test split, a
small clean split of the training images, and a noisy split whose labels are
corrupted — symmetric noise moves a label to one of the other nine classes
uniformly, pair-flip noise moves class k to k+1 mod 10, each with probability
``rate``.  Written under OUTDIR: images/*.png, list files (train.txt with true
labels, test.txt, clean.txt, noisy.txt with corrupted labels, noisy_true.txt
with the noisy split's true labels) and the LMDBs train_lmdb, test_lmdb,
clean_lmdb, noisy_lmdb (1x28x28 uint8 Datums, keys as convert_imageset
would write them for these list files).
"""
import argparse
import functools
import importlib.util
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
from ..proto_io import write_atomically

NUM_CLASSES = 10
SPLITS = ("train", "test", "clean", "noisy")


def _sklearn_digits():
    """(images (N, 8, 8), labels) from the CSV scikit-learn ships.

    Reading the file that ``load_digits`` reads saves importing scikit-learn
    (seconds, with scipy); if the file moves, ``load_digits`` is the fallback.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise CaffeError("the digits demo needs scikit-learn: pip install scikit-learn")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
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


def corrupt_labels(labels, noise, rate, generator):
    """Labels with each one moved, with probability ``rate``, by the ``noise`` rule."""
    if not 0 <= rate <= 1:
        raise CaffeError(f"noise rate {rate} is not in [0, 1]")
    flip = generator.random(len(labels)) < rate
    if noise == "symmetric":
        moved = (labels + generator.integers(1, NUM_CLASSES, len(labels))) % NUM_CLASSES
    elif noise == "pairflip":
        moved = (labels + 1) % NUM_CLASSES
    else:
        raise CaffeError(f"unknown noise type '{noise}' (use symmetric or pairflip)")
    return np.where(flip, moved, labels)


def _split(count, test_fraction, clean_fraction, generator):
    order = generator.permutation(count)
    n_test = int(round(count * test_fraction))
    test, train = np.sort(order[:n_test]), order[n_test:]
    n_clean = int(round(len(train) * clean_fraction))
    return {"train": np.sort(train), "test": test,
            "clean": np.sort(train[:n_clean]), "noisy": np.sort(train[n_clean:])}


def _write_split(outdir, name, indices, labels, images, paths):
    lines = "".join(f"{paths[i]} {labels[i]}\n" for i in indices)
    write_atomically(os.path.join(outdir, f"{name}.txt"), lines)
    with LMDBWriter(os.path.join(outdir, f"{name}_lmdb")) as writer:
        for line_id, i in enumerate(indices):
            datum = image_to_datum(images[i][:, :, None], labels[i])
            writer.put(key_for(line_id, paths[i]), datum.SerializeToString())


def make_digits_dataset(outdir, noise="symmetric", rate=0.4, clean_fraction=0.1,
                        test_fraction=0.2, seed=1, overwrite=False):
    """Write the demo data set to ``outdir``; returns a dict of split sizes and the
    realised noise rate.  ``overwrite`` replaces the list files and LMDBs of an
    earlier run (the images are the same for every setting)."""
    generator = np.random.default_rng(seed)
    images, labels = digit_images()
    splits = _split(len(images), test_fraction, clean_fraction, generator)
    noisy_labels = labels.copy()
    noisy_labels[splits["noisy"]] = corrupt_labels(labels[splits["noisy"]], noise, rate,
                                                   generator)
    if overwrite:
        for name in SPLITS:
            shutil.rmtree(os.path.join(outdir, f"{name}_lmdb"), ignore_errors=True)
    os.makedirs(os.path.join(outdir, "images"), exist_ok=True)
    paths = [f"images/{i:05d}.png" for i in range(len(images))]
    for path, image in zip(paths, images):
        target = os.path.join(outdir, path)
        if not os.path.exists(target):
            Image.fromarray(image).save(target)
    for name in SPLITS:
        split_labels = noisy_labels if name == "noisy" else labels
        _write_split(outdir, name, splits[name], split_labels, images, paths)
    write_atomically(os.path.join(outdir, "noisy_true.txt"),
                     "".join(f"{paths[i]} {labels[i]}\n" for i in splits["noisy"]))
    noisy = splits["noisy"]
    realised = float(np.mean(noisy_labels[noisy] != labels[noisy])) if len(noisy) else 0.0
    summary = {name: len(idx) for name, idx in splits.items()}
    summary.update(noise=noise, rate=rate, realised_rate=realised, outdir=outdir)
    return summary


def run(argv):
    parser = argparse.ArgumentParser(
        prog="make_digits_dataset",
        description="Write the bundled demo data set under OUTDIR: scikit-learn's 1797 real "
                    "handwritten digits as 28x28 PNG images, list files (train, test, clean, "
                    "noisy with corrupted labels, noisy_true) and their LMDBs.")
    parser.add_argument("outdir", metavar="OUTDIR", help="folder to write the data set into")
    parser.add_argument("--noise", choices=("symmetric", "pairflip"), default="symmetric",
                        help="kind of label noise (symmetric)")
    parser.add_argument("--rate", type=float, default=0.4, help="label noise rate (0.4)")
    parser.add_argument("--clean-fraction", type=float, default=0.1,
                        help="share of the training images kept clean (0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of all images held out for testing (0.2)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the split and the noise (1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the list files and LMDBs of an earlier run")
    args = parser.parse_args(argv)
    s = make_digits_dataset(args.outdir, args.noise, args.rate, args.clean_fraction,
                            args.test_fraction, args.seed, args.overwrite)
    print(f"make_digits_dataset: {args.outdir}: train {s['train']} (clean {s['clean']}, "
          f"noisy {s['noisy']}), test {s['test']}; {s['noise']} noise at rate {s['rate']} "
          f"(realised {s['realised_rate']:.3f})")


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
