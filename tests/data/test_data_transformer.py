"""DataTransformer against Caffe's per-pixel loop written out in plain Python."""
import numpy as np
import pytest

from pycaffe_mct.data import DataTransformer
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.io import array_to_blobproto
from pycaffe_mct.layer import TEST, TRAIN
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import write_binary_proto


def caffe_loop(image, crop, h_off, w_off, mirror, scale, mean=None, mean_values=()):
    """DataTransformer::Transform(Datum) pixel by pixel, in float32."""
    channels, height, width = image.shape
    out_h, out_w = (crop, crop) if crop else (height, width)
    out = np.zeros((channels, out_h, out_w), dtype=np.float32)
    values = list(mean_values) * (channels if len(mean_values) == 1 else 1)
    for c in range(channels):
        for h in range(out_h):
            for w in range(out_w):
                x = np.float32(image[c, h_off + h, w_off + w])
                if mean is not None:
                    x = (x - mean[c, h_off + h, w_off + w]) * np.float32(scale)
                elif values:
                    x = (x - np.float32(values[c])) * np.float32(scale)
                else:
                    x = x * np.float32(scale)
                out[c, h, out_w - 1 - w if mirror else w] = x
    return out


def _param(**fields):
    return caffe_pb2.TransformationParameter(**fields)


def _image(shape=(3, 7, 6), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _run(transformer, image, seed=5):
    shape = transformer.output_shape(image.shape)
    out = np.empty(shape, dtype=np.float32)
    transformer.transform(image, np.random.default_rng(seed), out)
    return out


@pytest.mark.parametrize("fields,mean_values", [
    (dict(scale=0.00390625), ()),
    (dict(scale=0.5, mean_value=[104.0]), (104.0,)),
    (dict(scale=1.7, mean_value=[104.0, 117.0, 123.0]), (104.0, 117.0, 123.0)),
])
def test_scale_and_mean_values_match_caffes_loop(fields, mean_values):
    image = _image()
    ours = _run(DataTransformer(_param(**fields), TEST), image)
    expected = caffe_loop(image, 0, 0, 0, False, fields["scale"], mean_values=mean_values)
    np.testing.assert_array_equal(ours, expected)


def test_centre_crop_in_test_with_mean_file(tmp_path):
    image = _image((2, 9, 8))
    mean = np.random.default_rng(1).random((1, 2, 9, 8)).astype(np.float32) * 255
    write_binary_proto(tmp_path / "mean.binaryproto", array_to_blobproto(mean))
    param = _param(crop_size=4, scale=0.1, mean_file=str(tmp_path / "mean.binaryproto"))
    ours = _run(DataTransformer(param, TEST), image)
    np.testing.assert_array_equal(ours, caffe_loop(image, 4, 2, 2, False, 0.1, mean=mean[0]))


def test_random_crop_and_mirror_in_train_draw_in_caffes_order():
    image = _image((3, 10, 12))
    param = _param(crop_size=5, mirror=True, scale=2.0, mean_value=[3.0])
    for seed in range(6):
        draws = np.random.default_rng(seed)
        mirror = bool(draws.integers(2))
        h_off, w_off = int(draws.integers(6)), int(draws.integers(8))
        ours = _run(DataTransformer(param, TRAIN), image, seed)
        np.testing.assert_array_equal(
            ours, caffe_loop(image, 5, h_off, w_off, mirror, 2.0, mean_values=(3.0,)))


def test_float_data_is_transformed_too():
    image = np.random.default_rng(2).random((1, 3, 3)).astype(np.float32)
    ours = _run(DataTransformer(_param(scale=3.0), TEST), image)
    np.testing.assert_array_equal(ours, caffe_loop(image, 0, 0, 0, False, 3.0))


def test_mean_file_and_mean_value_together_are_refused():
    with pytest.raises(CaffeError, match="mean_file and mean_value"):
        DataTransformer(_param(mean_file="m", mean_value=[1.0]), TEST)


def test_force_color_and_gray_together_are_refused():
    with pytest.raises(CaffeError, match="both force_color and force_gray"):
        DataTransformer(_param(force_color=True, force_gray=True), TEST)


def test_wrong_number_of_mean_values_names_the_record():
    transformer = DataTransformer(_param(mean_value=[1.0, 2.0]), TEST)
    with pytest.raises(CaffeError, match="src key k: specify either 1 mean_value or as many"):
        transformer.transform(_image(), np.random.default_rng(0),
                              np.empty((3, 7, 6), np.float32), "src key k")


def test_mean_file_of_another_shape_names_the_record(tmp_path):
    write_binary_proto(tmp_path / "m", array_to_blobproto(np.zeros((1, 3, 4, 4), np.float32)))
    transformer = DataTransformer(_param(mean_file=str(tmp_path / "m")), TEST)
    with pytest.raises(CaffeError, match=r"rec: image shape \(3, 7, 6\) differs from the "
                                         r"mean file's \(3, 4, 4\)"):
        transformer.check((3, 7, 6), "rec")


def test_missing_mean_file_is_named():
    with pytest.raises(CaffeError, match="mean_file 'nowhere.binaryproto' does not exist"):
        DataTransformer(_param(mean_file="nowhere.binaryproto"), TEST)


def test_crop_larger_than_image_is_refused():
    with pytest.raises(CaffeError, match="crop_size 9 is larger than the 7x6 image"):
        DataTransformer(_param(crop_size=9), TEST).output_shape((3, 7, 6))
