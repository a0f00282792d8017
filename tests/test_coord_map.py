"""caffe.coord_map: maps through conv/pool/deconv/crop chains, checked by hand and by
running the Crop layer that crop() makes."""
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import layers as L, params as P
from pycaffe_mct.coord_map import (AxisMismatchException, CoordMapError, CropError, compose,
                                   coord_map_from_to, crop, inverse)


def chain(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0, size=20):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, size, size]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool)
    n.deconv = L.Deconvolution(n.pool, num_output=1, kernel_size=2 * dstride, stride=dstride,
                               pad=dpad)
    return n


@pytest.mark.parametrize("layer, expected", [
    # conv 3x3 stride 1: conv pixel y sees data y..y+2, centred on y+1
    (lambda d: L.Convolution(d, num_output=1, kernel_size=3), (1, 1, 1)),
    # conv 3x3 stride 2 pad 1: y is centred on 2y
    (lambda d: L.Convolution(d, num_output=1, kernel_size=3, stride=2, pad=1), (1, 2, 0)),
    # dilation 2 widens a 3x3 kernel to 5: centred on y+2
    (lambda d: L.Convolution(d, num_output=1, kernel_size=3, dilation=2), (1, 1, 2)),
    # pool 2x2 stride 2: y covers 2y and 2y+1, centred on 2y+0.5
    (lambda d: L.Pooling(d, kernel_size=2, stride=2), (1, 2, 0.5)),
    # deconv stride 2 kernel 4 pad 1: data x lands on 2x + 0.5
    (lambda d: L.Deconvolution(d, num_output=1, kernel_size=4, stride=2, pad=1), (1, 0.5, -0.25)),
    (lambda d: L.ReLU(d), (None, 1, 0)),
])
def test_single_layer_maps_by_hand(layer, expected):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.out = layer(n.data)
    axis, scale, shift = coord_map_from_to(n.out, n.data)
    assert axis == expected[0]
    np.testing.assert_allclose(scale, expected[1])
    np.testing.assert_allclose(shift, expected[2])


def test_conv_pool_deconv_chain_composes():
    # deconv -> data: deconv 4/2 (x/2 - 3/4), then pool 2 (2x + 1/2), then conv 3 (x + 1)
    n = chain()
    axis, scale, shift = coord_map_from_to(n.deconv, n.data)
    assert axis == 1
    np.testing.assert_allclose(scale, 1)
    np.testing.assert_allclose(shift, 0)     # 2 * (-3/4) + 1/2 + 1
    n = chain(pad=1)
    np.testing.assert_allclose(coord_map_from_to(n.deconv, n.data)[2], -1)


def test_crop_made_by_crop_aligns_a_padded_conv_exactly():
    """A delta kernel makes big[y] = data[y - 4]; the Crop from crop() must undo the shift."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 9, 7]))
    n.big = L.Convolution(n.data, num_output=1, kernel_size=3, pad=5, bias_term=False)
    n.aligned = crop(n.big, n.data)
    net = caffe.Net(n.to_proto(), caffe.TEST)
    assert list(net.layer_dict["aligned"].param.crop_param.offset) == [4]
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0, 1, 1] = 1
    net.params["big"][0].data[...] = kernel
    x = np.random.default_rng(0).standard_normal((1, 1, 9, 7))
    np.testing.assert_allclose(net.forward(data=x)["aligned"], x, rtol=1e-6)


def test_crop_of_the_fcn_chain_has_the_data_shape():
    n = chain(pool=4, dstride=4, size=32)
    n.score = crop(n.deconv, n.data)
    net = caffe.Net(n.to_proto(), caffe.TEST)
    assert net.blobs["score"].shape == net.blobs["data"].shape


def test_crop_of_crop_adds_the_offset():
    n = chain()
    n.crop = L.Crop(n.deconv, n.data, axis=2, offset=3)
    np.testing.assert_allclose(coord_map_from_to(n.crop, n.data)[2], 3)


def test_compose_and_inverse():
    assert inverse((1, 2.0, 1.0)) == (1, 0.5, -0.5)
    assert compose((None, 1, 0), (2, 3, 4)) == (2, 3, 4)
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


def test_unconnected_tops_are_an_error():
    n = chain()
    n.ip = L.InnerProduct(n.deconv, num_output=2)
    with pytest.raises(CoordMapError, match="no coordinate map from InnerProduct"):
        coord_map_from_to(n.ip, n.data)


@pytest.mark.parametrize("n, expected", [
    (chain(pool=3, dstride=2), "change of scale"),
    (chain(dpad=10), "negative offset"),
    (chain(ks=2), "fractional offset"),
])
def test_impossible_crops_are_refused(n, expected):
    with pytest.raises(CropError, match=expected):
        crop(n.deconv, n.data)


def test_legacy_2d_fields_are_refused():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=3, kernel_size=3)
    with pytest.raises(CropError, match="kernel_h"):
        coord_map_from_to(n.conv, n.data)
