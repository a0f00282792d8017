"""Pooling (MAX, AVE): Caffe's output-size rule, padding, global pooling and the mask top."""
import math

import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive


def pool_text(options):
    return f'type: "Pooling" pooling_param {{ {options} }}'


def caffe_pooled_size(size, kernel, pad, stride, padded):
    """Written from Caffe's PoolingLayer::Reshape: ceil, then drop a window starting in the pad."""
    pooled = int(math.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    if padded and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def reference_pool(x, kernel, stride, pad, method):
    """Loops over windows; MAX ignores padding, AVE divides by the window clipped to the pad."""
    n, c, h, w = x.shape
    padded = any(pad)
    out_h = caffe_pooled_size(h, kernel[0], pad[0], stride[0], padded)
    out_w = caffe_pooled_size(w, kernel[1], pad[1], stride[1], padded)
    y = np.zeros((n, c, out_h, out_w))
    mask = np.zeros((n, c, out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[1]
            y1, x1 = min(y0 + kernel[0], h + pad[0]), min(x0 + kernel[1], w + pad[1])
            area = (y1 - y0) * (x1 - x0)
            window = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if method == "MAX":
                flat = window.reshape(n, c, -1)
                y[:, :, oy, ox] = flat.max(axis=2)
                first = flat.argmax(axis=2)            # first maximum, as Caffe
                wy = first // window.shape[3] + max(y0, 0)
                wx = first % window.shape[3] + max(x0, 0)
                mask[:, :, oy, ox] = wy * w + wx
            else:
                y[:, :, oy, ox] = window.sum(axis=(2, 3)) / area
    return y, mask


CASES = {
    "max_even": ("pool: MAX kernel_size: 2 stride: 2", (2, 1, 4, 6), (2, 2), (2, 2), (0, 0)),
    "max_ceil": ("pool: MAX kernel_size: 3 stride: 2", (1, 2, 6, 7), (3, 3), (2, 2), (0, 0)),
    "max_pad": ("pool: MAX kernel_size: 3 stride: 2 pad: 1", (1, 2, 5, 6), (3, 3), (2, 2),
                (1, 1)),
    "max_rect": ("pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0",
                 (1, 1, 4, 5), (3, 2), (1, 2), (1, 0)),
    "ave_ceil": ("pool: AVE kernel_size: 3 stride: 2", (1, 2, 6, 5), (3, 3), (2, 2), (0, 0)),
    "ave_pad": ("pool: AVE kernel_size: 3 stride: 2 pad: 1", (1, 2, 5, 6), (3, 3), (2, 2),
                (1, 1)),
    "ave_rect": ("pool: AVE kernel_h: 2 kernel_w: 3 stride: 1 pad_h: 1 pad_w: 1",
                 (1, 1, 3, 4), (2, 3), (1, 1), (1, 1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_reference(case):
    options, shape, kernel, stride, pad = CASES[case]
    x = uniform(*shape, seed=5)
    method = options.split()[1]
    tops_wanted = 2 if method == "MAX" else 1
    _, _, tops = run_layer(pool_text(options), x, tops=tops_wanted)
    expected, mask = reference_pool(x, kernel, stride, pad, method)
    assert tops[0].shape == expected.shape
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-6, atol=1e-6)
    if method == "MAX":
        np.testing.assert_array_equal(tops[1].data, mask)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient(case):
    options, shape = CASES[case][:2]
    # A permutation keeps every window's maximum unique, so MAX is differentiable.
    x = np.random.default_rng(6).permutation(np.prod(shape)).reshape(shape) / 10.0
    check_gradient_exhaustive(make_layer(pool_text(options)), blobs_from(x), empty_tops(1))


def test_caffe_rounding_and_padding_rule():
    # ceil: 6 with kernel 3 stride 2 gives 3 windows, where floor (as convolution) gives 2.
    _, _, tops = run_layer(pool_text("pool: MAX kernel_size: 3 stride: 2"), np.ones((1, 1, 6, 6)))
    assert tops[0].shape == (1, 1, 3, 3)
    # 4 + 2*2 - 3 over 3 rounds up to 3 windows, but the third would start at 6 = 4 + pad,
    # inside the padding: Caffe drops it.
    assert caffe_pooled_size(4, 3, 2, 3, True) == 2
    _, _, tops = run_layer(pool_text("pool: AVE kernel_size: 3 stride: 3 pad: 2"),
                           np.ones((1, 1, 4, 4)))
    assert tops[0].shape == (1, 1, 2, 2)
    # The correction applies to both axes as soon as one is padded: unpadded, width 5 with
    # kernel 1 stride 3 gives 3 windows (the last one beyond the image); padded, 2.
    assert caffe_pooled_size(5, 1, 0, 3, False) == 3
    _, _, tops = run_layer(pool_text("pool: MAX kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 "
                                     "stride_h: 1 stride_w: 3"), np.ones((1, 1, 3, 5)))
    assert tops[0].shape == (1, 1, 3, 2)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method):
    x = uniform(2, 2, 3, 4, seed=7)
    _, _, tops = run_layer(pool_text(f"pool: {method} global_pooling: true"), x)
    expected = x.max(axis=(2, 3)) if method == "MAX" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(tops[0].data.reshape(2, 2), expected, rtol=1e-6)
    check_gradient_exhaustive(make_layer(pool_text(f"pool: {method} global_pooling: true")),
                              blobs_from(x), empty_tops(1))


def test_reshape_follows_a_new_input_size():
    layer, bottoms, tops = run_layer(pool_text("pool: MAX kernel_size: 2 stride: 2"),
                                     np.ones((1, 1, 4, 4)))
    bottoms[0].reshape(2, 1, 6, 8)
    bottoms[0].data[...] = uniform(2, 1, 6, 8)
    layer.forward(bottoms, tops)
    expected, _ = reference_pool(bottoms[0].data.astype(float), (2, 2), (2, 2), (0, 0), "MAX")
    np.testing.assert_allclose(tops[0].data, expected)


@pytest.mark.parametrize("options,message", [
    ("pool: AVE kernel_size: 2", "only MAX pooling can output a mask"),
    ("pool: MAX global_pooling: true kernel_size: 2", "global_pooling takes no kernel"),
    ("pool: MAX kernel_size: 2 pad: 2", "must be smaller than the kernel"),
    ("pool: MAX kernel_h: 2", "give both kernel_h and kernel_w"),
    ("pool: MAX kernel_size: 2 kernel_h: 2 kernel_w: 2", "not both"),
    ("pool: STOCHASTIC kernel_size: 2", "STOCHASTIC is not supported"),
])
def test_bad_parameters_name_the_layer(options, message):
    tops = 2 if "AVE" in options else 1
    with pytest.raises(NetError, match=f"layer 'p'.*{message}"):
        run_layer('name: "p" ' + pool_text(options), np.ones((1, 1, 4, 4)), tops=tops)
