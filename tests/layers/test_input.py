"""Input (shapes from input_param) and DummyData (filled tops, refilled unless constant)."""
import numpy as np
import pytest

from layer_helpers import run_layer
from pycaffe_mct import rng
from pycaffe_mct.errors import NetError


def test_input_shapes_one_for_all_or_one_per_top():
    _, _, tops = run_layer('type: "Input" input_param { shape { dim: 2 dim: 3 } }', tops=2)
    assert [t.shape for t in tops] == [(2, 3), (2, 3)]
    _, _, tops = run_layer('type: "Input" input_param { shape { dim: 2 } shape { dim: 4 dim: 1 } }',
                           tops=2)
    assert [t.shape for t in tops] == [(2,), (4, 1)]


def test_input_keeps_what_the_user_wrote():
    layer, bottoms, tops = run_layer('type: "Input" input_param { shape { dim: 3 } }')
    tops[0].data[...] = [1, 2, 3]
    tops[0].reshape(5)
    tops[0].data[...] = 4
    layer.forward(bottoms, tops)
    assert tops[0].shape == (5,)
    np.testing.assert_array_equal(tops[0].data, 4)


def test_input_shape_count_must_fit_the_tops():
    with pytest.raises(NetError, match=r"layer 'in'.*2 shapes for 3 tops"):
        run_layer('name: "in" type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } }',
                  tops=3)


def test_dummy_data_constant_and_random_fillers():
    rng.set_random_seed(1)
    text = ('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
            'data_filler { type: "constant" value: 7 } data_filler { type: "uniform" } }')
    layer, bottoms, tops = run_layer(text, tops=2)
    assert tops[0].shape == (2, 3) and tops[1].shape == (4,)
    np.testing.assert_array_equal(tops[0].data, 7)
    first = tops[1].data.copy()
    assert ((first >= 0) & (first <= 1)).all()
    tops[0].data[...] = 0
    layer.forward(bottoms, tops)
    np.testing.assert_array_equal(tops[0].data, 0)          # constant tops are filled once
    assert not np.array_equal(tops[1].data, first)           # random ones at every forward


def test_dummy_data_legacy_dimensions():
    text = ('type: "DummyData" dummy_data_param { num: 2 channels: 3 channels: 1 '
            'height: 4 width: 5 }')
    _, _, tops = run_layer(text, tops=2)
    assert [t.shape for t in tops] == [(2, 3, 4, 5), (2, 1, 4, 5)]
    np.testing.assert_array_equal(tops[0].data, 0)          # default filler: constant 0


@pytest.mark.parametrize("params,message", [
    ("", "gives no shape"),
    ("shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1", "not both"),
    ("num: 1 channels: 1 height: 1", "width has 0 values"),
    ("shape { dim: 1 } data_filler { type: 'constant' } data_filler { type: 'constant' } "
     "data_filler { type: 'constant' }", "3 data_filler entries for 2 tops"),
])
def test_dummy_data_errors_name_the_layer(params, message):
    with pytest.raises(NetError, match=f"layer 'dd'.*{message}"):
        run_layer(f'name: "dd" type: "DummyData" dummy_data_param {{ {params} }}', tops=2)
