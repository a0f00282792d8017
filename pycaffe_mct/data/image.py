"""Image decoding, resizing and encoding with OpenCV's numerics, through Pillow.

Caffe reads images with OpenCV: ``imread`` gives BGR (or gray) uint8 pixels and
``cv::resize`` with INTER_LINEAR resizes them in fixed point (11-bit weights,
no anti-aliasing).  Pillow's own bilinear filter anti-aliases when shrinking and
would give visibly different pixels, so ``resize_linear`` re-derives OpenCV's
arithmetic in numpy.  Everything here works on (H, W, C) uint8 arrays in BGR
order, C = 1 or 3, as OpenCV's Mat does.

A file's header may declare far more pixels than its few bytes hold (a
decompression bomb).  Images declaring more than ``max_image_pixels()`` pixels
are refused from the header, before any pixel is decoded.  The limit is
Pillow's own warning threshold (89,478,485 pixels, about 9459 x 9459) unless
the environment variable ``PYCAFFE_MCT_MAX_IMAGE_PIXELS`` sets another (0: no
limit); worker processes and MPI ranks inherit it.
"""
import io
import os
import re
import warnings

import numpy as np
from PIL import Image

from ..errors import quote
from .kernels_image import resize_linear_u8

COEF_BITS = 11                  # OpenCV's INTER_RESIZE_COEF_BITS
COEF_SCALE = 1 << COEF_BITS


PIXEL_LIMIT_VARIABLE = "PYCAFFE_MCT_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485     # PIL.Image.MAX_IMAGE_PIXELS's default


class ImageDecodeError(ValueError):
    """Bytes that are not a readable image; callers add the file or record."""


def max_image_pixels():
    """The most pixels an image may declare (0: no limit), from the environment."""
    text = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ImageDecodeError(f"{PIXEL_LIMIT_VARIABLE}={text!r} is not a pixel count "
                               f"(a non-negative integer; 0 means no limit)")
    return limit


def open_within_limit(data):
    """Pillow's lazily decoding image of ``data``, refused if its header declares more
    pixels than the limit.  Pillow's own bomb check (at twice its MAX_IMAGE_PIXELS) is
    raised along with a larger limit of ours, never lowered; what it refuses is over
    ours too."""
    limit = max_image_pixels()
    pillows = Image.MAX_IMAGE_PIXELS
    if pillows is not None and (not limit or limit > pillows):
        Image.MAX_IMAGE_PIXELS = limit or None
    try:
        with warnings.catch_warnings():     # ours below is the one that speaks
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(f"{declared[1] if declared else 'too many'} pixels", limit) \
            from None
    width, height = image.size
    if limit and width * height > limit:
        raise _too_many_pixels(f"{width} x {height} = {width * height} pixels", limit)
    return image


def _too_many_pixels(declared, limit):
    return ImageDecodeError(
        f"its header declares {declared}, more than the limit of {limit} (a decompression "
        f"bomb?); set {PIXEL_LIMIT_VARIABLE} to allow larger images")


def decode_image(data, color=None):
    """Decode JPEG/PNG/... bytes to an (H, W, C) uint8 BGR array.

    ``color`` True forces 3 channels, False forces gray, None keeps the file's
    own kind (OpenCV's IMREAD_ANYCOLOR, used for encoded datums).
    """
    try:
        image = open_within_limit(data)
        if color is False and image.format == "JPEG" and image.mode != "L":
            image.draft("L", image.size)   # libjpeg's own gray output, as OpenCV asks for
        image.load()
    except ImageDecodeError:
        raise
    except Exception as exc:       # noqa: BLE001 - any decoder failure on hostile bytes
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: "
                               f"{quote(exc)}") from None
    if image.mode == "L":
        gray = np.asarray(image)
        return gray[:, :, None] if color is not True else np.repeat(gray[:, :, None], 3, 2)
    if image.mode in ("I;16", "I;16B", "I"):
        gray = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)  # 16-bit -> 8-bit
        return gray[:, :, None] if color is not True else np.repeat(gray[:, :, None], 3, 2)
    bgr = np.asarray(Image.merge("RGB", image.convert("RGB").split()[::-1]))
    if color is not False:
        return bgr
    return png_rgb_to_gray(bgr) if image.format == "PNG" else bgr_to_gray(bgr)


def read_image(path, color=True):
    """Read an image file as OpenCV's ``imread`` would (BGR, or gray if not ``color``)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_image(data, color)


def bgr_to_gray(bgr):
    """OpenCV's BGR2GRAY for uint8: 14-bit fixed-point ITU-R 601 weights, rounded."""
    b, g, r = (bgr[:, :, k].astype(np.int32) for k in range(3))
    gray = (b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14
    return gray.astype(np.uint8)[:, :, None]


def png_rgb_to_gray(bgr):
    """libpng's rgb_to_gray as OpenCV's PNG reader asks for it: 15-bit weights, truncated."""
    b, g, r = (bgr[:, :, k].astype(np.int32) for k in range(3))
    mixed = (r * 9797 + g * 19234 + b * 3737) >> 15
    gray = np.where((r == g) & (g == b), r, mixed)
    return gray.astype(np.uint8)[:, :, None]


def _axis_taps(src_size, dst_size):
    """Source index and fixed-point weights of both taps along one axis."""
    scale = 1.0 / (dst_size / src_size)              # OpenCV: 1 / inv_scale, in double
    pos = ((np.arange(dst_size) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(pos).astype(np.int64)
    frac = (pos - index.astype(np.float32)).astype(np.float32)
    return index, frac


def _weights(frac):
    w1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int32)
    w0 = np.rint((np.float32(1) - frac) * np.float32(COEF_SCALE)).astype(np.int32)
    return w0, w1


def resize_linear(image, height, width):
    """``cv::resize(image, Size(width, height))`` with INTER_LINEAR, for uint8 (H, W, C)."""
    src_h, src_w, channels = image.shape
    if (src_h, src_w) == (height, width):
        return image.copy()
    if src_h == 2 * height and src_w == 2 * width:
        return _halve(image)                          # OpenCV switches to INTER_AREA here
    xs, fx = _axis_taps(src_w, width)
    fx[(xs < 0) | (xs >= src_w - 1)] = 0              # OpenCV clamps columns and weights
    x0 = np.clip(xs, 0, src_w - 1)
    a0, a1 = _weights(fx)
    ys, fy = _axis_taps(src_h, height)                # rows clamp, weights do not
    b0, b1 = _weights(fy)
    # Taps per element of a row (column * channels + channel), as OpenCV lays them out.
    lanes = np.arange(channels)
    first = (x0[:, None] * channels + lanes).ravel()
    second = (np.minimum(x0 + 1, src_w - 1)[:, None] * channels + lanes).ravel()
    out = np.empty((height, width * channels), dtype=np.uint8)
    resize_linear_u8(np.ascontiguousarray(image).reshape(src_h, -1), first, second,
                     np.repeat(a0, channels), np.repeat(a1, channels),
                     np.clip(ys, 0, src_h - 1), np.clip(ys + 1, 0, src_h - 1), b0, b1, out)
    return out.reshape(height, width, channels)


def _halve(image):
    """OpenCV's fast INTER_AREA for an exact 2x shrink: rounded 2x2 means."""
    p = image.astype(np.int32)
    total = p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]
    return ((total + 2) >> 2).astype(np.uint8)


def encode_image(image, encode_type):
    """Encode an (H, W, C) uint8 BGR array as ``encode_type`` (png, jpg, ...) bytes."""
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}.get(encode_type.lower())
    if fmt is None:
        raise ValueError(f"unsupported encode_type '{encode_type}' (use png, jpg or bmp)")
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image[:, :, ::-1])
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}   # OpenCV's default JPEG quality
    pil.save(buffer, fmt, **options)
    return buffer.getvalue()
