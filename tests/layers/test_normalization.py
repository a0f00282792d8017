"""LRN, BatchNorm, MVN against numpy references; gradients by finite differences."""
import numpy as np
import pytest

import reference_layers as ref
from layer_helpers import blobs_from
from zoo_helpers import assert_close, check_gradient, forward, random
from pycaffe_mct.errors import NetError
from pycaffe_mct.layer import TEST, TRAIN

LRN = 'type: "LRN" lrn_param {{ local_size: {size} alpha: {alpha} beta: 0.75 k: {k} {extra} }}'


@pytest.mark.parametrize("size,k", [(3, 1.0), (5, 2.0)])
def test_lrn_across_channels_forward_and_gradient(size, k):
    x = random(2, 7, 3, 4)
    text = LRN.format(size=size, alpha=0.3, k=k, extra="")
    _, _, tops = forward(text, x)
    assert_close(tops[0].data, ref.lrn_across(x, size, 0.3, 0.75, k))
    check_gradient(text, x)


def test_lrn_within_channel_forward_and_gradient():
    x = random(2, 2, 5, 4)
    text = LRN.format(size=3, alpha=0.5, k=7.0, extra="norm_region: WITHIN_CHANNEL")
    _, _, tops = forward(text, x)
    assert_close(tops[0].data, ref.lrn_within(x, 3, 0.5, 0.75))   # k unused, as in Caffe
    check_gradient(text, x)


def test_lrn_rejects_even_local_size():
    with pytest.raises(NetError, match="local_size 4"):
        forward(LRN.format(size=4, alpha=1, k=1, extra=""), random(1, 3, 2, 2))


def test_batch_norm_train_uses_batch_statistics_and_updates_blobs():
    x = random(3, 4, 2, 5)
    layer, _, tops = forward('type: "BatchNorm" batch_norm_param { eps: 0.001 }', x)
    mean, var = ref.batch_statistics(x)
    assert_close(tops[0].data, ref.batch_norm(x, mean, var, 0.001), rtol=1e-4, atol=1e-5)
    m = x.size / 4
    assert_close(layer.blobs[0].data, mean)                       # 0.999*0 + mean
    assert_close(layer.blobs[1].data, var * m / (m - 1))          # unbiased
    assert layer.blobs[2].data[0] == 1.0
    assert [p.lr_mult for p in layer.param.param] == [0, 0, 0]    # statistics are not learned
    layer.forward(blobs_from(x), tops)
    assert_close(layer.blobs[2].data, [1.999])
    assert_close(layer.blobs[0].data, mean * 1.999)


def test_batch_norm_test_phase_uses_stored_statistics_over_scale_factor():
    x = random(2, 3, 2, 2)
    layer, bottoms, tops = forward('type: "BatchNorm"', x, phase=TEST)
    layer.blobs[0].data[...] = [2.0, 4.0, 6.0]
    layer.blobs[1].data[...] = [4.0, 8.0, 2.0]
    layer.blobs[2].data[...] = 2.0
    layer.forward(bottoms, tops)
    assert_close(tops[0].data, ref.batch_norm(x, np.array([1., 2, 3]), np.array([2., 4, 1]), 1e-5))


@pytest.mark.parametrize("phase,shape", [(TRAIN, (3, 2, 2, 3)), (TEST, (2, 3, 2, 2)),
                                         (TRAIN, (5, 3))])
def test_batch_norm_gradient(phase, shape):
    x = random(*shape, seed=3)
    text = 'type: "BatchNorm"'
    if phase == TEST:
        text += ' batch_norm_param { use_global_stats: true }'
    check_gradient(text, x, phase=phase, check_params=False)


def test_batch_norm_rejects_learned_statistics():
    with pytest.raises(NetError, match="lr_mult 1"):
        forward('name: "bn" type: "BatchNorm" param { lr_mult: 1 }', random(2, 3, 2, 2))


@pytest.mark.parametrize("across,variance", [(False, True), (True, True), (False, False)])
def test_mvn_forward_and_gradient(across, variance):
    x = random(2, 3, 3, 2, seed=5)
    text = (f'type: "MVN" mvn_param {{ across_channels: {str(across).lower()} '
            f'normalize_variance: {str(variance).lower()} }}')
    _, _, tops = forward(text, x)
    axes = (1, 2, 3) if across else (2, 3)
    expected = x - x.mean(axis=axes, keepdims=True)
    if variance:
        expected /= np.sqrt(x.var(axis=axes, keepdims=True)) + 1e-9
    assert_close(tops[0].data, expected, rtol=1e-4, atol=1e-5)
    check_gradient(text, x, threshold=2e-3)
