"""The gradient checker itself: it must catch a wrong gradient, one added to a stale bottom
diff, and skip kinks only."""
import numpy as np
import pytest

from layer_helpers import blobs_from, empty_tops
from pycaffe_mct.gradient_check import (GradientCheckError, check_gradient_directional,
                                        check_gradient_exhaustive)
from pycaffe_mct.layer import Layer
from pycaffe_mct.proto import caffe_pb2


class Cube(Layer):
    """y = x^3, with a backward that can be made wrong on purpose."""
    exact_bottoms = exact_tops = 1

    def __init__(self, factor=3.0):
        super().__init__(caffe_pb2.LayerParameter(name="cube"))
        self.factor = factor

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward_cpu(self, bottom, top):
        top[0].data[...] = bottom[0].data ** 3

    def backward_cpu(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff * self.factor * bottom[0].data ** 2


class Abs(Cube):
    """|x| + 1: a kink at 0 that the checker's squared objective keeps (plain |x| it smooths)."""

    def forward_cpu(self, bottom, top):
        top[0].data[...] = np.abs(bottom[0].data) + 1

    def backward_cpu(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff * np.sign(bottom[0].data)


X = np.array([[-0.9, -0.4, 0.3], [0.5, 0.8, 1.1]])


def test_right_gradient_passes_both_modes():
    check_gradient_exhaustive(Cube(), blobs_from(X), empty_tops(1))
    check_gradient_directional(Cube(), blobs_from(X), empty_tops(1))


@pytest.mark.parametrize("check", [check_gradient_exhaustive, check_gradient_directional])
def test_wrong_gradient_is_caught(check):
    with pytest.raises(GradientCheckError):
        check(Cube(factor=2.9), blobs_from(X), empty_tops(1))


def test_kink_band_skips_only_inputs_near_the_kink():
    near_kink = np.array([[0.004, -0.5, 0.7]])
    with pytest.raises(GradientCheckError, match="element 0"):
        check_gradient_exhaustive(Abs(), blobs_from(near_kink), empty_tops(1))
    check_gradient_exhaustive(Abs(), blobs_from(near_kink), empty_tops(1), kink=0.0,
                              kink_range=0.01)


class AddingCube(Cube):
    """The right gradient, added to the bottom diff instead of written over it."""

    def backward_cpu(self, top, propagate_down, bottom):
        bottom[0].diff[...] += top[0].diff * self.factor * bottom[0].data ** 2


@pytest.mark.parametrize("check", [check_gradient_exhaustive, check_gradient_directional])
def test_a_backward_that_adds_to_the_bottom_diff_is_caught(check):
    """Nets reuse diff arrays (diff_release.py): a bottom diff may hold anything before
    backward, and a layer must write it over."""
    with pytest.raises(GradientCheckError):
        check(AddingCube(), blobs_from(X), empty_tops(1))
