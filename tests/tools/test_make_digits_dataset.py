"""The digits demo data set: layout, splits, label noise, and LeNet learning from it."""
import numpy as np
import pytest
from data_helpers import golden_records, raw_pixels

from pycaffe_mct.errors import CaffeError
from pycaffe_mct.tools.make_digits_dataset import main, make_digits_dataset, split_indices


def _labels(path):
    return {line.split()[0]: int(line.split()[1]) for line in path.read_text().splitlines()}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("digits")
    assert main([str(outdir), "--rate", "0.4", "--seed", "3"]) == 0
    return outdir


def test_layout_and_split_sizes(digits):
    """By default a third of the clean budget (10% of training) is clean validation data."""
    train, test = _labels(digits / "train.txt"), _labels(digits / "test.txt")
    clean, noisy = _labels(digits / "clean.txt"), _labels(digits / "noisy.txt")
    val = _labels(digits / "val.txt")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert set(clean) | set(val) | set(noisy) == set(train)
    assert len(clean) + len(val) + len(noisy) == len(train)
    budget = round(0.1 * len(train))
    assert not set(train) & set(test) and len(clean) + len(val) == budget
    assert len(val) == round(budget / 3)
    assert all((digits / path).is_file() for path in list(test)[:5])


def test_noisy_split_keeps_true_labels_beside(digits):
    train, noisy = _labels(digits / "train.txt"), _labels(digits / "noisy.txt")
    truth = _labels(digits / "noisy_true.txt")
    assert truth == {path: train[path] for path in noisy}
    wrong = np.mean([noisy[p] != truth[p] for p in noisy])
    assert 0.35 < wrong < 0.45


def test_lmdbs_hold_the_listed_images_as_convert_imageset_would(digits):
    records = golden_records(digits / "clean_lmdb")
    listed = (digits / "clean.txt").read_text().splitlines()
    from PIL import Image
    for line_id, ((key, datum), line) in enumerate(list(zip(records, listed))[:10]):
        path, label = line.split()
        assert key == f"{line_id:08d}_{path}".encode() and datum.label == int(label)
        assert (datum.channels, datum.height, datum.width) == (1, 28, 28)
        png = np.asarray(Image.open(digits / path))
        np.testing.assert_array_equal(raw_pixels(datum)[:, :, 0], png)


def test_bad_noise_settings_are_refused(tmp_path):
    with pytest.raises(CaffeError, match="unknown noise type 'gaussian'"):
        make_digits_dataset(tmp_path / "a", noise="gaussian")
    with pytest.raises(CaffeError, match="rate 1.5 is not in"):
        make_digits_dataset(tmp_path / "b", rate=1.5)


def test_overwrite_rewrites_lists_and_lmdbs(digits):
    summary = make_digits_dataset(digits, noise="pairflip", rate=0.2, seed=3, overwrite=True)
    assert summary["noisy"] == 1294 and 0.15 < summary["realised_rate"] < 0.25
    with pytest.raises(CaffeError, match=r"made with other arguments \(source digits, noise "
                                         r"pairflip, rate 0.2.*pass --overwrite"):
        make_digits_dataset(digits, seed=3)
    assert main([str(digits), "--rate", "0.4", "--seed", "3", "--overwrite"]) == 0  # as built


def test_second_run_with_the_same_arguments_reuses_the_data_set(digits, capsys):
    before = (digits / "noisy.txt").stat().st_mtime_ns
    assert main([str(digits), "--rate", "0.4", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"make_digits_dataset: {digits} already holds this data set (same arguments); "
        f"reusing it")
    assert (digits / "noisy.txt").stat().st_mtime_ns == before


def test_lmdbs_of_an_older_run_without_a_manifest_need_overwrite(tmp_path, digits):
    import shutil
    shutil.copytree(digits / "test_lmdb", tmp_path / "test_lmdb")
    with pytest.raises(CaffeError, match="made with unknown arguments; pass --overwrite"):
        make_digits_dataset(tmp_path)


def test_validation_is_drawn_from_the_clean_budget():
    splits = split_indices(1000, np.random.default_rng(0), 0.2, 0.1, val_fraction=0.25)
    sizes = {name: len(idx) for name, idx in splits.items()}
    assert sizes == {"train": 800, "test": 200, "val": 20, "clean": 60, "noisy": 720}
    parts = np.concatenate([splits[n] for n in ("val", "clean", "noisy")])
    np.testing.assert_array_equal(np.sort(parts), splits["train"])
    again = split_indices(1000, np.random.default_rng(0), 0.2, 0.1, val_fraction=0.25)
    assert all(np.array_equal(again[n], splits[n]) for n in splits)


def test_mnist5k_source_writes_real_mnist_digits(tmp_path):
    summary = make_digits_dataset(tmp_path, source="mnist5k", noise="asymmetric", rate=0.4,
                                  val_fraction=0.33)
    assert (summary["train"], summary["test"], summary["val"]) == (4000, 1000, 132)
    assert 0.17 < summary["realised_rate"] < 0.22        # half the classes flip
    assert len(golden_records(tmp_path / "val_lmdb")) == 132


def test_bad_transition_file_is_refused_with_its_name(tmp_path):
    np.save(tmp_path / "t.npy", np.full((10, 10), 0.2))
    with pytest.raises(CaffeError, match=r"t.npy: row 0 sums to 2, not 1"):
        make_digits_dataset(tmp_path / "out", transition_file=str(tmp_path / "t.npy"))


@pytest.mark.slow
def test_lenet_learns_from_the_train_lmdb(digits, monkeypatch):
    """Forward/backward of models/lenet on the LMDB, with plain SGD steps, lowers the loss."""
    import pathlib

    import pycaffe_mct as caffe
    from pycaffe_mct import rng
    repo = pathlib.Path(__file__).resolve().parents[2]
    (digits / "data").mkdir(exist_ok=True)
    if not (digits / "data" / "digits").exists():
        (digits / "data" / "digits").symlink_to(digits)
    monkeypatch.chdir(digits)
    rng.set_random_seed(1)
    net = caffe.Net(str(repo / "models/lenet/lenet_train_test.prototxt"), caffe.TRAIN)
    assert net.blobs["data"].shape == (64, 1, 28, 28) and net.blobs["label"].shape == (64,)
    losses = []
    for _ in range(25):
        net.clear_param_diffs()
        losses.append(net.forward_backward())
        for blob in net.learnable_params:
            blob.data[...] -= 0.05 * blob.diff
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
