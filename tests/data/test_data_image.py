"""Decoding and resizing against the pixels BVLC Caffe (OpenCV 4.6) stored in its LMDBs."""
import numpy as np
import pytest
from data_helpers import golden_records, list_entries, raw_pixels

from pycaffe_mct.data import decode_image, read_image, resize_linear
from pycaffe_mct.data.image import ImageDecodeError, encode_image

JPEG_TOLERANCE = 2   # grey levels; measured 0 with Pillow's libjpeg-turbo against OpenCV 4.6


def _tolerance(path):
    return JPEG_TOLERANCE if path.endswith(".jpg") else 0


def test_decoded_images_match_caffes_raw_lmdb(fixtures_dir):
    records = golden_records(fixtures_dir / "raw_lmdb")
    for (path, label), (_, datum) in zip(list_entries(fixtures_dir), records):
        ours = read_image(str(fixtures_dir / "images" / path)).astype(int)
        assert ours.shape == raw_pixels(datum).shape
        assert np.abs(ours - raw_pixels(datum)).max() <= _tolerance(path), path
        assert datum.label == label


def test_resize_reproduces_caffes_resized_lmdb(fixtures_dir):
    raw = golden_records(fixtures_dir / "raw_lmdb")
    resized = golden_records(fixtures_dir / "resized_lmdb")
    for (_, source), (_, target) in zip(raw, resized):
        ours = resize_linear(raw_pixels(source), 24, 20)
        np.testing.assert_array_equal(ours, raw_pixels(target))


def test_gray_resize_reproduces_caffes_gray_lmdb(fixtures_dir):
    gray = golden_records(fixtures_dir / "gray_lmdb")
    for (path, _), (_, target) in zip(list_entries(fixtures_dir), gray):
        image = read_image(str(fixtures_dir / "images" / path), color=False)
        ours = resize_linear(image, 16, 16).astype(int)
        assert np.abs(ours - raw_pixels(target)).max() <= _tolerance(path), path


def test_encoded_lmdb_decodes_to_raw_pixels(fixtures_dir):
    raw = golden_records(fixtures_dir / "raw_lmdb")
    encoded = golden_records(fixtures_dir / "encoded_lmdb")
    for (key, plain), (key_enc, packed) in zip(raw, encoded):
        assert key == key_enc and packed.encoded
        np.testing.assert_array_equal(decode_image(packed.data), raw_pixels(plain))


def _bilinear_reference(image, height, width):
    """Half-pixel-centre bilinear interpolation in float64, edges clamped."""
    src_h, src_w = image.shape[:2]
    out = np.zeros((height, width, image.shape[2]))
    for y in range(height):
        fy = min(max((y + 0.5) * src_h / height - 0.5, 0), src_h - 1)
        y0 = int(fy)
        y1, wy = min(y0 + 1, src_h - 1), fy - y0
        for x in range(width):
            fx = min(max((x + 0.5) * src_w / width - 0.5, 0), src_w - 1)
            x0 = int(fx)
            x1, wx = min(x0 + 1, src_w - 1), fx - x0
            top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
            bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
            out[y, x] = top * (1 - wy) + bottom * wy
    return out


@pytest.mark.parametrize("source,target", [((7, 9), (15, 4)), ((20, 13), (6, 17)),
                                           ((5, 5), (12, 12))])
def test_resize_matches_float_bilinear_within_one_level(source, target):
    image = np.random.default_rng(0).integers(0, 256, source + (3,)).astype(np.uint8)
    ours = resize_linear(image, *target).astype(float)
    assert np.abs(ours - _bilinear_reference(image.astype(float), *target)).max() <= 1.0


def test_exact_halving_averages_two_by_two_blocks():
    image = np.random.default_rng(1).integers(0, 256, (8, 6, 1)).astype(np.uint8)
    blocks = image.reshape(4, 2, 3, 2, 1).astype(int).sum(axis=(1, 3))
    np.testing.assert_array_equal(resize_linear(image, 4, 3), (blocks + 2) // 4)


def test_encode_then_decode_png_is_lossless():
    image = np.random.default_rng(2).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(decode_image(encode_image(image, "png")), image)
    gray = image[:, :, :1].copy()
    np.testing.assert_array_equal(decode_image(encode_image(gray, "png")), gray)


def test_garbage_bytes_raise_decode_error():
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(b"definitely not an image")
