"""InnerProduct: y = x W^T + b over the axes from ``axis`` on, and the transposed layout."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.errors import NetError
from pycaffe_mct.gradient_check import check_gradient_exhaustive

FILLERS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -1 }'


def ip_text(options):
    return f'type: "InnerProduct" inner_product_param {{ {options} {FILLERS} }}'


CASES = {
    "default": ("num_output: 3", (2, 2, 2, 2), 1),
    "axis2": ("num_output: 3 axis: 2", (2, 3, 2, 2), 2),
    "negative_axis": ("num_output: 2 axis: -1", (2, 3, 4), 2),
    "transpose": ("num_output: 3 transpose: true", (2, 5), 1),
    "no_bias": ("num_output: 2 bias_term: false", (3, 4), 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward(case):
    options, shape, axis = CASES[case]
    x = uniform(*shape, seed=8)
    layer, _, tops = run_layer(ip_text(options), x)
    weight = layer.blobs[0].data.astype(float)
    inputs = int(np.prod(shape[axis:]))
    if case == "transpose":
        assert weight.shape == (inputs, 3)
        weight = weight.T
    else:
        assert weight.shape == (weight.shape[0], inputs)
    rows = x.reshape(int(np.prod(shape[:axis])), inputs)
    expected = np.array([[np.dot(weight[o], row) for o in range(weight.shape[0])]
                         for row in rows])
    if len(layer.blobs) == 2:
        expected += layer.blobs[1].data
    assert tops[0].shape == shape[:axis] + (weight.shape[0],)
    np.testing.assert_allclose(tops[0].data.reshape(expected.shape), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient(case):
    options, shape, _ = CASES[case]
    check_gradient_exhaustive(make_layer(ip_text(options)), blobs_from(uniform(*shape, seed=9)),
                              empty_tops(1))


def test_batch_may_change_but_not_the_input_size():
    layer, bottoms, tops = run_layer(ip_text("num_output: 2"), np.ones((2, 3)))
    bottoms[0].reshape(5, 3)
    layer.forward(bottoms, tops)
    assert tops[0].shape == (5, 2)
    bottoms[0].reshape(5, 4)
    with pytest.raises(NetError, match="weights expect 3"):
        layer.forward(bottoms, tops)
