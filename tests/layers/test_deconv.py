"""Deconvolution against a scatter-based numpy transpose convolution."""
import pytest

import reference_layers as ref
from zoo_helpers import assert_close, check_gradient, forward, random

FILLERS = ('weight_filler { type: "uniform" min: -1 max: 1 } '
           'bias_filler { type: "uniform" min: -1 max: 1 }')


@pytest.mark.parametrize("kernel,stride,pad,group", [(3, 1, 0, 1), (3, 2, 1, 1), (2, 2, 0, 2),
                                                     (4, 3, 1, 2)])
def test_deconvolution_forward_and_gradient(kernel, stride, pad, group):
    x = random(2, 4, 3, 2)
    text = (f'type: "Deconvolution" convolution_param {{ num_output: 6 kernel_size: {kernel} '
            f'stride: {stride} pad: {pad} group: {group} {FILLERS} }}')
    layer, _, tops = forward(text, x)
    weight, bias = (blob.data.astype(float) for blob in layer.blobs)
    assert weight.shape == (4, 6 // group, kernel, kernel)
    expected = ref.deconv(x, weight, bias, (stride, stride), (pad, pad), group)
    assert tops[0].shape == expected.shape
    assert_close(tops[0].data, expected, rtol=1e-5, atol=1e-5)
    check_gradient(text, x, threshold=2e-3)
