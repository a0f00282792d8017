"""Training without keeping activation diffs (pycaffe_mct/diff_release.py): diffs needed at
different times share storage, the losses, activations and parameter gradients stay the same
bits, and the training commands turn it on unless given --keep-diffs."""
import numpy as np
import pytest

from pycaffe_mct import blob, diff_release, set_random_seed
from test_diff_sharing import BLOCK as SHARING_BLOCK
from test_fusion import same_weights
from test_net import make_net

# A residual block (test_diff_sharing's) whose branch ends in a BatchNorm -> Scale -> ReLU chain;
# the sum's top and its shortcut bottom share their diff (diff_sharing.py).
CHAIN = """
layer { name: "bn" type: "BatchNorm" bottom: "branch" top: "branch" }
layer { name: "scale" type: "Scale" bottom: "branch" top: "branch" scale_param { bias_term: true } }
layer { name: "bn_relu" type: "ReLU" bottom: "branch" top: "branch" }
"""
BLOCK = SHARING_BLOCK.replace("COEFFS", "").replace("BRANCH_LAYER", CHAIN)


@pytest.fixture
def mapped(monkeypatch):
    """Every storage counts as large, so that the small test net's diffs are shared."""
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


def distinct_diff_arrays(net):
    return {id(b._diff.array) for b in net.blobs.values()}


def test_released_diffs_leave_losses_activations_and_gradients_unchanged(mapped):
    kept, released = same_weights(make_net(BLOCK), make_net(BLOCK))
    assert diff_release.release_diffs_once_used(released) is released
    assert len(distinct_diff_arrays(released)) < len(distinct_diff_arrays(kept))
    assert train(kept) == train(released)
    for name in kept.blobs:
        np.testing.assert_array_equal(kept.blobs[name].data, released.blobs[name].data)
    for name, blobs in kept.params.items():
        for ours, theirs in zip(blobs, released.params[name]):
            np.testing.assert_array_equal(ours.data, theirs.data)    # BatchNorm's statistics too
            np.testing.assert_array_equal(ours.diff, theirs.diff)


def test_a_shared_array_serves_diffs_needed_at_different_times(mapped):
    """Each colour's spans (from the highest layer writing a diff down to the lowest producing
    it) are disjoint, and its array is as large as its largest member."""
    spans = {id(span.storage): span for span in diff_release._spans(make_net(BLOCK))}
    colours = diff_release._colours(list(spans.values()))
    assert len(colours) < len(spans)
    for size, storages in colours:
        members = sorted((spans[id(storage)] for storage in storages), key=lambda s: s.low)
        assert all(a.high < b.low for a, b in zip(members, members[1:]))
        assert size == max(member.count for member in members)
    net = diff_release.release_diffs_once_used(make_net(BLOCK))
    groups = {}
    for name, b in net.blobs.items():
        groups.setdefault(id(b._diff.array), []).append(name)
    # "x" (Split to its convolution) and "branch" (the sum to its convolution) take turns;
    # "data"'s diff (written by the first convolution) reuses the sum's and shortcut's.
    assert sorted(groups.values()) == [["data", "x_x_0_split_1", "sum"], ["ip"], ["loss"],
                                       ["target"], ["x", "branch"], ["x_x_0_split_0"]]
    before = distinct_diff_arrays(net)
    diff_release.release_diffs_once_used(net)                 # a second call changes nothing
    assert distinct_diff_arrays(net) == before


@pytest.mark.slow
@pytest.mark.parametrize("model,batch,shape", [
    ("cifar10_quick/train_val.prototxt", 4, (3, 32, 32)),
    ("googlenet/train_val.prototxt", 1, (3, 224, 224)),
    ("resnet50/train_val.prototxt", 1, (3, 224, 224)),
])
def test_the_reference_nets_train_the_same_with_released_diffs(model, batch, shape):
    from pathlib import Path
    from pycaffe_mct.commands.timing import build_timing_net
    from pycaffe_mct.layer import TRAIN
    path = Path(__file__).resolve().parents[1] / "models" / model
    kept, released = same_weights(*(build_timing_net(path, TRAIN, batch, shape) for _ in "ab"))
    diff_release.release_diffs_once_used(released)
    losses = []
    for net in (kept, released):
        set_random_seed(7)                        # the same Dropout masks
        net.clear_param_diffs()
        losses.append(net.forward_backward())
    assert losses[0] == losses[1]
    for name, blobs in kept.params.items():
        for ours, theirs in zip(blobs, released.params[name]):
            np.testing.assert_array_equal(ours.diff, theirs.diff)


@pytest.mark.parametrize("flags,released_nets", [([], 1), (["--release-diffs"], 1),
                                                  (["--keep-diffs"], 0)])
def test_train_releases_its_nets_diffs_unless_told_to_keep_them(monkeypatch, tmp_path, flags,
                                                               released_nets):
    """`pycaffe_mct train` releases the solver's net's diffs; `--keep-diffs` keeps them."""
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
    for flags, expected in (([], True), (["--release-diffs"], True), (["--keep-diffs"], False)):
        with pytest.raises(Stop):
            mct_train.mct_train_main(["--solver", str(solver), *flags])
        assert seen["release_diffs"] is expected
