"""Training with activation diffs released once used (pycaffe_mct/diff_release.py): the same
losses, activations and parameter gradients as a net that keeps them, the diffs given back,
and the training commands' --release-diffs turns it on."""
import numpy as np
import pytest

from pycaffe_mct import blob, diff_release
from test_fusion import same_weights
from test_net import make_net

# A residual block with a BatchNorm -> Scale -> ReLU chain and a shortcut whose diff the
# sum's bottoms share (diff_sharing.py).
BLOCK = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "x" type: "Convolution" bottom: "data" top: "x"
        convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "branch" type: "Convolution" bottom: "x" top: "branch"
        convolution_param { num_output: 3 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "bn" type: "BatchNorm" bottom: "branch" top: "branch" }
layer { name: "scale" type: "Scale" bottom: "branch" top: "branch" scale_param { bias_term: true } }
layer { name: "bn_relu" type: "ReLU" bottom: "branch" top: "branch" }
layer { name: "sum" type: "Eltwise" bottom: "branch" bottom: "x" top: "sum" }
layer { name: "relu" type: "ReLU" bottom: "sum" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""


@pytest.fixture
def mapped(monkeypatch):
    """Every storage mapped, as large ones are, so that each diff can be released."""
    monkeypatch.setattr(blob, "MAPPED_BYTES", 0)


def train(net, iterations=2):
    rng = np.random.default_rng(5)
    losses = []
    for _ in range(iterations):
        net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
        net.blobs["target"].data[...] = rng.standard_normal(net.blobs["target"].shape)
        net.clear_param_diffs()
        losses.append(net.forward_backward())
    return losses


def test_released_diffs_leave_losses_activations_and_gradients_unchanged(mapped):
    kept, released = same_weights(make_net(BLOCK), make_net(BLOCK))
    assert diff_release.release_diffs_once_used(released) is released
    assert train(kept) == train(released)
    for name in kept.blobs:
        np.testing.assert_array_equal(kept.blobs[name].data, released.blobs[name].data)
    for name, blobs in kept.params.items():
        for ours, theirs in zip(blobs, released.params[name]):
            np.testing.assert_array_equal(ours.data, theirs.data)    # BatchNorm's statistics too
            np.testing.assert_array_equal(ours.diff, theirs.diff)
    # What a user would see: the activation diffs are given back once used.
    for name in ("x", "branch", "sum", "ip"):
        assert np.any(kept.blobs[name].diff) and not np.any(released.blobs[name].diff)
    chain = next(iter(released._chains.values()))
    assert not np.any(chain.batch_norm.normalized.data)


def test_release_is_installed_once(mapped):
    net = make_net(BLOCK)
    diff_release.release_diffs_once_used(net)
    hooks = len(net._backward_hooks)
    diff_release.release_diffs_once_used(net)
    assert len(net._backward_hooks) == hooks == 1


def test_release_pages_gives_mapped_storage_back_and_leaves_small_storage(monkeypatch):
    large = blob.zeroed_storage(1 << 20)
    large[...] = 1.0
    blob.release_pages(large)
    assert not np.any(large)                                  # zero pages again
    small = blob.zeroed_storage(16)
    small[...] = 1.0
    blob.release_pages(small)
    assert np.all(small == 1.0)


@pytest.mark.parametrize("flags,released_nets", [(["--release-diffs"], 1), ([], 0)])
def test_train_releases_its_nets_diffs_when_asked(monkeypatch, tmp_path, flags, released_nets):
    """`pycaffe_mct train --release-diffs` turns the release on for the solver's net."""
    from pycaffe_mct.commands import train as train_command
    released = []
    monkeypatch.setattr(train_command, "release_diffs_once_used", released.append)
    net_path = tmp_path / "net.prototxt"
    net_path.write_text(BLOCK.replace("force_backward: true", ""))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(f'net: "{net_path}" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 '
                           f'display: 0 snapshot_after_train: false solver_mode: CPU')
    assert train_command.train_main(["--solver", str(solver_path), *flags]) == 0
    assert len(released) == released_nets
    assert all("branch" in net.blobs for net in released)


def test_mct_train_hands_release_diffs_to_the_trainer(monkeypatch):
    from pathlib import Path
    from pycaffe_mct.commands import mct_train
    from pycaffe_mct.mct import trainer
    solver = Path(__file__).resolve().parents[1] / "models" / "mct_digits" / "solver.prototxt"
    seen = {}

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise Stop
    monkeypatch.setattr(trainer, "MCTTrainer", spy)
    for flags, expected in ((["--release-diffs"], True), ([], False)):
        with pytest.raises(Stop):
            mct_train.mct_train_main(["--solver", str(solver), *flags])
        assert seen["release_diffs"] is expected
