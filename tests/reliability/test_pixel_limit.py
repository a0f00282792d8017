"""The pixel limit: images whose header declares too many pixels are refused before decoding."""
import pytest

from pycaffe_mct.data.image import (DEFAULT_MAX_IMAGE_PIXELS, PIXEL_LIMIT_VARIABLE,
                                    ImageDecodeError, decode_image)
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.io import load_image
from hostile_helpers import png_bytes, png_declaring


def test_the_default_limit_is_pillows_warning_threshold(monkeypatch):
    monkeypatch.delenv(PIXEL_LIMIT_VARIABLE, raising=False)
    side = int(DEFAULT_MAX_IMAGE_PIXELS ** 0.5) + 1
    with pytest.raises(ImageDecodeError, match=rf"declares {side} x {side} = {side * side} "
                                               rf"pixels, more than the limit of 89478485"):
        decode_image(png_declaring(side, side))


@pytest.mark.parametrize("limit,refused", [("15", True), ("16", False), ("0", False)])
def test_the_limit_is_set_by_the_environment(monkeypatch, limit, refused):
    monkeypatch.setenv(PIXEL_LIMIT_VARIABLE, limit)
    if refused:
        with pytest.raises(ImageDecodeError, match=f"limit of {limit} .*{PIXEL_LIMIT_VARIABLE}"):
            decode_image(png_bytes())
    else:
        assert decode_image(png_bytes()).shape == (4, 4, 3)


def test_a_limit_above_pillows_own_lets_the_header_through(monkeypatch):
    # 15000 x 15000 is over Pillow's bomb error (2 x 89478485): with a higher limit
    # of ours the header passes and only the missing pixel data is reported.
    monkeypatch.setenv(PIXEL_LIMIT_VARIABLE, str(300_000_000))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_declaring(15000, 15000))
    assert "limit" not in str(info.value) and "cannot decode image" in str(info.value)


def test_pycaffe_load_image_obeys_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(PIXEL_LIMIT_VARIABLE, "10")
    path = tmp_path / "small.png"
    path.write_bytes(png_bytes())
    with pytest.raises(CaffeError, match=f"{path}: cannot read image: .*limit of 10"):
        load_image(str(path))
