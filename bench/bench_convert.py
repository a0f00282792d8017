"""convert_imageset with resize on all cores vs a plain single-threaded Pillow loop.

Writes COUNT photo-like 500x375 JPEGs and a Clothing1M-style list, then times
  - the baseline: one thread, Pillow decode -> Pillow resize to 256x256 -> Datum
    -> serialized bytes (no database), and
  - ``convert_imageset --resize_height=256 --resize_width=256`` with one worker
    process per core (OpenCV-exact resize, written to an LMDB),
and prints both rates and their ratio (target >= 1).

    python bench/bench_convert.py [COUNT]
"""
import io
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from pycaffe_mct.data import image_to_datum
from pycaffe_mct.tools.convert_imageset import convert

SIZE = 256


def photo_like(generator, height, width):
    """A smooth random scene with sensor-like noise, as a PIL image: JPEG-codes like a photo."""
    y, x = np.mgrid[0:height, 0:width] / height
    phase = generator.random((3, 3)) * 6
    rgb = np.stack([np.sin(x * 7 * phase[c, 0] + y * 5 * phase[c, 1] + phase[c, 2])
                    for c in range(3)], axis=2) * 100 + 128
    rgb += generator.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def write_photos(root, count):
    """``count`` 500x375 JPEGs in class folders, and their Clothing1M-style list file."""
    generator = np.random.default_rng(0)
    lines = []
    for i in range(count):
        os.makedirs(os.path.join(root, "images", str(i % 10)), exist_ok=True)
        name = f"images/{i % 10}/{i:06d}.jpg"
        photo_like(generator, 375, 500).save(os.path.join(root, name), quality=90)
        lines.append(f"{name} {i % 14}\n")
    with open(os.path.join(root, "noisy_label_kv.txt"), "w") as handle:
        handle.writelines(lines)


def pillow_loop(root):
    """The baseline: decode, resize, build and serialize a Datum, one image at a time."""
    start = time.perf_counter()
    with open(os.path.join(root, "noisy_label_kv.txt")) as handle:
        entries = [line.rsplit(" ", 1) for line in handle.read().splitlines()]
    for name, label in entries:
        with open(os.path.join(root, name), "rb") as image_file:
            image = Image.open(io.BytesIO(image_file.read())).convert("RGB")
        resized = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR))[:, :, ::-1]
        image_to_datum(resized, int(label)).SerializeToString()
    return len(entries) / (time.perf_counter() - start)


def print_machine():
    """Cores and load: on a shared machine other processes' load moves every figure."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores {len(os.sched_getaffinity(0))}, load average {load}")


def main(count=300, rounds=2):
    print_machine()
    baseline = ours = 0.0
    with tempfile.TemporaryDirectory() as root:
        write_photos(root, count)
        for round_index in range(rounds):          # interleaved, best of each
            baseline = max(baseline, pillow_loop(root))
            written, _, seconds = convert(
                root + "/", os.path.join(root, "noisy_label_kv.txt"),
                os.path.join(root, f"db{round_index}"), resize_height=SIZE, resize_width=SIZE,
                log=lambda *args: None)
            ours = max(ours, written / seconds)
    print(f"{count} JPEGs 500x375 -> {SIZE}x{SIZE}: single-threaded Pillow loop "
          f"{baseline:.0f} images/s; convert_imageset on {len(os.sched_getaffinity(0))} cores "
          f"{ours:.0f} images/s (ratio {ours / baseline:.2f}, target >= 1)")

if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
