"""Convolution: forward against direct loops over output pixels, backward by finite differences."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.cg.ops import winograd
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive

FILLERS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 }'


def conv_text(options):
    return f'type: "Convolution" convolution_param {{ {options} {FILLERS} }}'


def reference_conv(x, w, b, stride, pad, dilation, group):
    """Direct definition: each output pixel is a dot product over its receptive field."""
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    out_h = (h + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (wd + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, out_h, out_w))
    per_group = o // group
    for img in range(n):
        for oc in range(o):
            first = (oc // per_group) * c_per_group
            for oy in range(out_h):
                for ox in range(out_w):
                    total = 0.0 if b is None else b[oc]
                    for ic in range(c_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                iy = oy * stride[0] - pad[0] + i * dilation[0]
                                ix = ox * stride[1] - pad[1] + j * dilation[1]
                                if 0 <= iy < h and 0 <= ix < wd:
                                    total += w[oc, ic, i, j] * x[img, first + ic, iy, ix]
                    y[img, oc, oy, ox] = total
    return y


CASES = {
    "pad_bias": ("num_output: 3 kernel_size: 3 pad: 1", (2, 2, 4, 3),
                 dict(stride=(1, 1), pad=(1, 1), dilation=(1, 1), group=1)),
    "stride": ("num_output: 2 kernel_size: 3 stride: 2", (1, 2, 5, 6),
               dict(stride=(2, 2), pad=(0, 0), dilation=(1, 1), group=1)),
    "rectangular": ("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
                    "stride_h: 2 stride_w: 1", (1, 2, 6, 5),
                    dict(stride=(2, 1), pad=(1, 0), dilation=(1, 1), group=1)),
    "group": ("num_output: 4 kernel_size: 2 group: 2", (1, 4, 4, 4),
              dict(stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=2)),
    "dilation": ("num_output: 2 kernel_size: 2 dilation: 2 pad: 1", (1, 2, 5, 5),
                 dict(stride=(1, 1), pad=(1, 1), dilation=(2, 2), group=1)),
    "no_bias": ("num_output: 2 kernel_size: 2 bias_term: false", (2, 1, 4, 3),
                dict(stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1)),
    # One input channel: by shifted runs of the image (cg/ops/single_channel.py).
    "single_channel": ("num_output: 3 kernel_size: 3 pad: 1", (2, 1, 5, 4),
                       dict(stride=(1, 1), pad=(1, 1), dilation=(1, 1), group=1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_direct_definition(case):
    check_forward(*CASES[case])


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient(case):
    check_layer_gradient(*CASES[case])


@pytest.mark.parametrize("tiling", ["F2", "F4"])
def test_winograd_forward_and_gradient(monkeypatch, tiling):
    """A 3x3 stride-1 layer by Winograd F(2x2, 3x3) or F(4x4, 3x3) (real layers need 64
    channels a group): forward as defined, backward by finite differences."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_OUTPUT_SIDE", 1)
    monkeypatch.setattr(winograd, "F4_MIN_TILES", 0 if tiling == "F4" else 1 << 30)
    monkeypatch.setattr(winograd, "F4_MAX_WASTE", 1e9)
    calls = []
    monkeypatch.setattr(winograd, "_input_tiles", lambda *args, real=winograd._input_tiles: (
        calls.append(args[0]), real(*args))[1])
    case = ("num_output: 4 kernel_size: 3 pad: 1 group: 2", (2, 4, 5, 4),
            dict(stride=(1, 1), pad=(1, 1), dilation=(1, 1), group=2))
    check_forward(*case)
    # A convolution is linear in its input and weights: a centred difference is exact at
    # any step, and a larger one keeps F(4x4, 3x3)'s rounding (~1e-6 of the outputs, here
    # 1.3e-3 of the gradient at Caffe's step 0.01) from swamping it.
    check_layer_gradient(*case, stepsize=0.1)
    assert set(calls) == {getattr(winograd, tiling)}


def check_forward(options, shape, geometry):
    x = uniform(*shape, seed=1)
    layer, _, tops = run_layer(conv_text(options), x)
    bias = layer.blobs[1].data.astype(float) if len(layer.blobs) == 2 else None
    assert (bias is None) == ("bias_term: false" in options)
    expected = reference_conv(x, layer.blobs[0].data.astype(float), bias, **geometry)
    assert tops[0].shape == expected.shape
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-5, atol=1e-5)


def check_layer_gradient(options, shape, _geometry, **checker):
    layer = make_layer(conv_text(options))
    check_gradient_exhaustive(layer, blobs_from(uniform(*shape, seed=2)), empty_tops(1),
                              **checker)


def test_two_bottoms_share_the_weights_and_accumulate_their_gradients():
    text = conv_text("num_output: 2 kernel_size: 2")
    a, b = uniform(1, 2, 3, 3, seed=3), uniform(1, 2, 3, 3, seed=4)
    layer, _, tops = run_layer(text, a, b, tops=2)
    weight = layer.blobs[0].data.astype(float)
    bias = layer.blobs[1].data.astype(float)
    geometry = dict(stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1)
    np.testing.assert_allclose(tops[1].data, reference_conv(b, weight, bias, **geometry),
                               rtol=1e-5, atol=1e-5)
    check_gradient_exhaustive(make_layer(text), blobs_from(a, b), empty_tops(2))


def test_output_size_rounds_down():
    text = conv_text("num_output: 1 kernel_size: 3 stride: 2")
    _, _, tops = run_layer(text, np.ones((1, 1, 8, 8)))
    assert tops[0].shape == (1, 1, 3, 3)        # (8 - 3) // 2 + 1


def test_parameter_errors_name_the_layer():
    with pytest.raises(NetError, match=r"layer 'c'.*group 3 must divide"):
        run_layer('name: "c" ' + conv_text("num_output: 4 kernel_size: 1 group: 3"),
                  np.ones((1, 4, 2, 2)))
    with pytest.raises(NetError, match=r"kernel_size or kernel_h/kernel_w, not both"):
        run_layer(conv_text("num_output: 1 kernel_size: 1 kernel_h: 2 kernel_w: 2"),
                  np.ones((1, 1, 3, 3)))
    with pytest.raises(NetError, match="larger than the padded input"):
        run_layer(conv_text("num_output: 1 kernel_size: 5"), np.ones((1, 1, 3, 3)))


def test_repeated_fields_give_per_axis_values():
    x = uniform(1, 1, 5, 4, seed=5)
    text = conv_text("num_output: 1 kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 "
                     "pad: 1 pad: 0 dilation: 1 dilation: 2")
    layer, _, tops = run_layer(text, x)
    assert layer.blobs[0].shape == (1, 1, 3, 2)
    expected = reference_conv(x, layer.blobs[0].data.astype(float),
                              layer.blobs[1].data.astype(float), stride=(2, 1), pad=(1, 0),
                              dilation=(1, 2), group=1)
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-5, atol=1e-5)
