"""Strided convolutions over phase images (``cg/ops/phases.py``): forward and filter gradient
equal a plain numpy convolution's on every executor, for strides 2 and 3, kernels that leave
zero taps, and framed images whose last phase row lies past the image; the bits do not depend
on the thread count; and the rule that chooses it."""
import pytest

from pycaffe_mct.cg.ops import phases
from pycaffe_mct.cg.ops.convolution import Window
from .conv_helpers import (  # noqa: F401 (mode: a fixture)
    calls_to, check_adjoints, check_deconvolution_backward, check_forward,
    check_weight_gradients_do_not_depend_on_the_thread_count, mode)

CASES = [  # x shape, out channels, window
    ((2, 3, 32, 32), 16, Window((7, 7), (3, 3), (2, 2))),   # ResNet-50's conv1, smaller
    ((2, 3, 31, 31), 8, Window((7, 7), (3, 3), (2, 2))),    # phase rows past the framed image
    ((2, 3, 37, 37), 8, Window((7, 7), (0, 0), (2, 2))),    # ... and no padding before them
    ((3, 2, 32, 32), 8, Window((5, 5), (2, 2), (2, 2))),    # 6x6 taps, 11 of them zero
    ((2, 4, 32, 32), 8, Window((3, 3), (1, 1), (2, 2))),    # 2x2 phase kernel, 16 channels
    ((2, 2, 48, 48), 8, Window((7, 7), (2, 2), (3, 3))),    # stride 3: 18 channels
]


@pytest.fixture
def by_phases(monkeypatch):
    """The test fails unless its convolutions went by the phase images."""
    calls = calls_to(monkeypatch, phases, ["_phase_images"])
    yield
    assert calls, "no convolution went by the phase images"


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_phase_forward_is_the_numpy_convolution(by_phases, mode, shape, outputs, window):
    check_forward(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES)
def test_phase_gradients_are_the_adjoints(by_phases, mode, shape, outputs, window):
    check_adjoints(shape, outputs, window)


@pytest.mark.parametrize("shape,outputs,window", CASES[:2])
def test_phase_deconvolution_backward(by_phases, mode, shape, outputs, window):
    check_deconvolution_backward(shape, outputs, window)


def test_weight_gradients_do_not_depend_on_the_thread_count(by_phases, monkeypatch):
    check_weight_gradients_do_not_depend_on_the_thread_count(
        monkeypatch, shape=(3, 3, 32, 32), outputs=8, window=CASES[0][2])


@pytest.mark.parametrize("window,channels,outputs,out_hw,expected", [
    (Window((7, 7), (3, 3), (2, 2)), 3, 64, (112, 112), phases.Phases(2, (7, 7))),
    (Window((11, 11), (0, 0), (4, 4)), 3, 96, (55, 55), None),     # AlexNet's: rows of 55
    (Window((1, 1), (0, 0), (2, 2)), 64, 64, (28, 28), None),      # a subsampling 1x1
    (Window((2, 2), (0, 0), (2, 2)), 8, 8, (16, 16), None),        # kernel = stride
    (Window((3, 3), (1, 1), (2, 2)), 32, 64, (28, 28), None),      # 128 phase channels
    (Window((3, 3), (1, 1), (2, 1)), 4, 8, (16, 32), None),        # strides differ
    (Window((3, 3), (2, 2), (2, 2), (2, 2)), 4, 8, (16, 16), None),  # dilated
    (Window((3, 3), (1, 1), (2, 2), group=2), 4, 8, (16, 16), None),
])
def test_phases_take_strided_convolutions_the_direct_kernels_can_finish(
        window, channels, outputs, out_hw, expected):
    assert phases.plan(window, channels, outputs, out_hw) == expected
