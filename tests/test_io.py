"""caffe.io: BlobProto and Datum conversions, images, and the Transformer."""
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import io
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import read_binary_proto


def test_blobproto_round_trip_with_diff():
    rng = np.random.default_rng(0)
    data, diff = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal(24)
    proto = io.array_to_blobproto(data, diff.reshape(2, 3, 4))
    assert list(proto.shape.dim) == [2, 3, 4]
    parsed = caffe_pb2.BlobProto.FromString(proto.SerializeToString())
    np.testing.assert_array_equal(io.blobproto_to_array(parsed), data)
    np.testing.assert_array_equal(io.blobproto_to_array(parsed, return_diff=True),
                                  diff.reshape(2, 3, 4).astype(np.float32))


def test_blobproto_with_legacy_dims():
    proto = caffe_pb2.BlobProto(num=1, channels=2, height=1, width=3, data=[1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(io.blobproto_to_array(proto), [[[[1, 2, 3]], [[4, 5, 6]]]])


def test_blobproto_with_a_wrong_value_count_is_refused():
    proto = caffe_pb2.BlobProto(data=[1, 2, 3])
    proto.shape.dim.extend([2, 2])
    with pytest.raises(CaffeError, match=r"holds 3 values but its shape \(2, 2\) needs 4"):
        io.blobproto_to_array(proto)


def test_caffe_mean_file_reads_with_its_legacy_shape(fixtures_dir):
    proto = read_binary_proto(fixtures_dir / "mean_resized.binaryproto", caffe_pb2.BlobProto())
    mean = io.blobproto_to_array(proto)
    assert mean.shape == (1, 3, 24, 20)
    # compute_image_mean logged these channel means.
    np.testing.assert_allclose(mean[0].mean(axis=(1, 2)), [128.101, 115.383, 126.741],
                               atol=1e-3)


def test_blobprotovector_round_trip():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 1, 2), np.float32)]
    back = io.blobprotovector_str_to_arraylist(io.arraylist_to_blobprotovector_str(arrays))
    for original, restored in zip(arrays, back):
        np.testing.assert_array_equal(original, restored)


def test_datum_round_trips_uint8_and_float():
    image = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    datum = io.array_to_datum(image, label=7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 4, 5, 7)
    assert datum.data == image.tobytes() and not datum.float_data
    restored = io.datum_to_array(caffe_pb2.Datum.FromString(datum.SerializeToString()))
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, image)
    values = np.random.default_rng(2).standard_normal((1, 2, 3)).astype(np.float32)
    datum = io.array_to_datum(values)
    assert not datum.data and not datum.HasField("label")
    np.testing.assert_array_equal(io.datum_to_array(datum), values)


def test_datum_needs_three_axes_and_refuses_encoded_images():
    with pytest.raises(CaffeError, match=r"3-axis \(C, H, W\) array, got shape \(4, 5\)"):
        io.array_to_datum(np.zeros((4, 5)))
    with pytest.raises(CaffeError, match="encoded image"):
        io.datum_to_array(caffe_pb2.Datum(encoded=True, data=b"\x89PNG"))


def test_load_image(fixtures_dir):
    listing = (fixtures_dir / "images" / "list.txt").read_text().split()
    path = fixtures_dir / "images" / listing[0]
    color = io.load_image(str(path))
    assert color.ndim == 3 and color.shape[2] == 3 and color.dtype == np.float32
    assert 0 <= color.min() and color.max() <= 1
    gray = io.load_image(str(path), color=False)
    assert gray.shape == color.shape[:2] + (1,)
    with pytest.raises(CaffeError, match="cannot read image"):
        io.load_image(str(fixtures_dir / "images" / "list.txt"))


def make_transformer():
    transformer = io.Transformer({"data": (1, 3, 4, 5)})
    transformer.set_transpose("data", (2, 0, 1))
    transformer.set_channel_swap("data", (2, 1, 0))
    transformer.set_raw_scale("data", 255)
    transformer.set_mean("data", np.array([104.0, 117.0, 123.0]))
    transformer.set_input_scale("data", 0.5)
    return transformer


def test_transformer_preprocess_matches_pycaffe_order_and_deprocess_inverts_it():
    image = np.random.default_rng(3).uniform(0, 1, (4, 5, 3)).astype(np.float32)
    transformer = make_transformer()
    net_input = transformer.preprocess("data", image)
    mean = np.array([104, 117, 123])[:, None, None]
    expected = (image.transpose(2, 0, 1)[::-1] * 255 - mean) * 0.5
    np.testing.assert_allclose(net_input, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(transformer.deprocess("data", net_input), image, atol=1e-5)


def test_transformer_resizes_to_the_input_size():
    transformer = io.Transformer({"data": (1, 1, 4, 6)})
    transformer.set_transpose("data", (2, 0, 1))
    constant = np.full((8, 12, 1), 0.25, np.float32)
    np.testing.assert_allclose(transformer.preprocess("data", constant), 0.25, rtol=1e-6)
    assert transformer.preprocess("data", constant).shape == (1, 4, 6)


@pytest.mark.parametrize("call,message", [
    (lambda t: t.set_mean("data", np.zeros(2)), "mean has 2 channels"),
    (lambda t: t.set_mean("data", np.zeros((3, 2, 2))), r"mean of shape \(3, 2, 2\)"),
    (lambda t: t.set_channel_swap("data", (1, 0)), "channel swap"),
    (lambda t: t.set_transpose("data", (1, 0)), "transpose"),
    (lambda t: t.preprocess("label", np.zeros((4, 5, 3))), "not one of the net inputs"),
])
def test_transformer_checks_its_settings(call, message):
    with pytest.raises(CaffeError, match=message):
        call(io.Transformer({"data": (1, 3, 4, 5)}))


def test_elementwise_means_of_the_input_shape_are_accepted():
    transformer = io.Transformer({"data": (1, 3, 4, 5), "gray": (1, 1, 4, 5)})
    transformer.set_mean("data", np.ones((3, 4, 5)))
    transformer.set_mean("gray", np.full((4, 5), 0.5))        # (H, W) for one channel
    transformer.set_transpose("gray", (2, 0, 1))
    np.testing.assert_allclose(transformer.preprocess("gray", np.ones((4, 5, 1))), 0.5)
    assert caffe.io is io
