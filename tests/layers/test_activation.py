"""Element-wise layers of activation.py against numpy; gradients by finite differences."""
import numpy as np
import pytest

from layer_helpers import blobs_from
from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.errors import NetError


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


CASES = [
    ('type: "ELU" elu_param { alpha: 0.7 }', lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    ('type: "AbsVal"', np.abs),
    ('type: "Power" power_param { power: 3 scale: 0.5 shift: 2 }', lambda x: (2 + 0.5 * x) ** 3),
    ('type: "Power" power_param { power: 0.5 scale: 1 shift: 2 }', lambda x: np.sqrt(2 + x)),
    ('type: "Exp"', np.exp),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda x: 2 ** (1 + 0.5 * x)),
    ('type: "Log" log_param { shift: 2 }', lambda x: np.log(2 + x)),
    ('type: "Log" log_param { base: 10 scale: 2 shift: 3 }', lambda x: np.log10(3 + 2 * x)),
    ('type: "BNLL"', lambda x: np.log1p(np.exp(x))),
    ('type: "Clip" clip_param { min: -0.5 max: 0.3 }', lambda x: np.clip(x, -0.5, 0.3)),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * sigmoid(1.5 * x)),
]


@pytest.mark.parametrize("text,fn", CASES, ids=[c[0].split('"')[1] + str(i)
                                                for i, c in enumerate(CASES)])
def test_neuron_forward_and_gradient(text, fn):
    x = random(2, 3, 4, seed=4)
    _, _, tops = forward(text, x)
    assert_close(tops[0].data, fn(x))
    check_gradient(text, x, kink_range=0.02 if "Clip" in text or "AbsVal" in text else -1)


def test_threshold_forward_and_no_gradient():
    x = random(3, 4)
    layer, bottoms, tops = forward('type: "Threshold" threshold_param { threshold: 0.2 }', x)
    assert_close(tops[0].data, (x > 0.2).astype(float))
    with pytest.raises(NetError, match="no gradient"):
        layer.backward(tops, [True], bottoms)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_forward_and_gradient(shared):
    x = random(2, 3, 2, 2)
    text = (f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} '
            f'filler {{ type: "uniform" min: 0.1 max: 0.5 }} }}')
    layer, _, tops = forward(text, x)
    slopes = layer.blobs[0].data.astype(np.float64)
    assert slopes.shape == ((1,) if shared else (3,))
    expected = np.maximum(x, 0) + slopes.reshape(1, -1, 1, 1) * np.minimum(x, 0)
    assert_close(tops[0].data, expected)
    check_gradient(text, x)


def test_prelu_default_slope_and_in_place_gradient():
    x = random(2, 3, 2)
    layer, _, _ = forward('type: "PReLU"', x)
    assert (layer.blobs[0].data == np.float32(0.25)).all()
    bottoms = blobs_from(x)
    layer.setup(bottoms, bottoms)
    layer.forward(bottoms, bottoms)
    bottoms[0].diff[...] = 1
    layer.blobs[0].diff[...] = 0
    layer.backward(bottoms, [True], bottoms)
    assert_close(layer.blobs[0].diff, (x * (x <= 0)).sum(axis=(0, 2)))
    assert_close(bottoms[0].diff, np.where(x > 0, 1, 0.25))
