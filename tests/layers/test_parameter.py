"""Parameter and Embed."""
import numpy as np
import pytest

from zoo_helpers import assert_close, check_gradient, forward
from pycaffe_mct.errors import NetError

FILLERS = ('weight_filler { type: "uniform" min: -1 max: 1 } '
           'bias_filler { type: "uniform" min: -1 max: 1 }')


def test_parameter_outputs_its_blob_and_shares_the_diff():
    layer, _, tops = forward('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }')
    assert tops[0].shape == (2, 3) and (tops[0].data == 0).all()
    layer.blobs[0].data[...] = 7
    tops[0].diff[...] = 2
    assert (tops[0].data == 7).all() and (layer.blobs[0].diff == 2).all()


def test_embed_forward_and_weight_gradient():
    indices = np.array([[0, 3], [3, 1]], dtype=np.float64)
    text = f'type: "Embed" embed_param {{ num_output: 2 input_dim: 4 {FILLERS} }}'
    layer, _, tops = forward(text, indices)
    weight, bias = (blob.data for blob in layer.blobs)
    assert_close(tops[0].data, weight[indices.astype(int)] + bias)
    check_gradient(text, indices, check_bottoms=[])


def test_embed_rejects_out_of_range_index():
    with pytest.raises(NetError, match=r"index 4.0 is not an integer in \[0, 4\)"):
        forward('type: "Embed" embed_param { num_output: 2 input_dim: 4 }', np.array([4.0]))
