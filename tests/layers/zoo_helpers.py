"""Helpers for the layer-zoo tests: run a layer on arrays, check its gradient."""
import numpy as np

from layer_helpers import blobs_from, empty_tops, make_layer, run_layer, uniform
from pycaffe_mct.gradient_check import check_gradient_exhaustive
from pycaffe_mct.layer import TRAIN

forward = run_layer
random = uniform


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def check_gradient(text, *arrays, tops=1, phase=TRAIN, **options):
    """Exhaustive finite-difference check of a freshly made layer."""
    layer = make_layer(text, phase)
    check_gradient_exhaustive(layer, blobs_from(*arrays), empty_tops(tops), **options)
