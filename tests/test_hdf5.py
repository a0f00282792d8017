"""HDF5 (the [hdf5] extra): Net.save_hdf5/load_hdf5 in Caffe's layout, files written by
h5py directly, HDF5Data and HDF5Output, and the error that names the extra."""
import sys

import h5py
import numpy as np
import pytest

import pycaffe_mct as caffe
from pycaffe_mct import rng
from pycaffe_mct.data import set_default_partition
from pycaffe_mct.errors import CaffeError, ModelFileError, NetError

# Two layers share ip1's weight (ParamSpec name "w"), so ip2 keeps only its bias; a layer
# name with a slash (as GoogLeNet's) becomes a nested group.
SHARED_NET = """
name: "shared"
input: "x" input_shape { dim: 2 dim: 4 }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                        bias_filler { type: "gaussian" std: 1 } } }
layer { name: "ip1/relu" type: "ReLU" bottom: "a" top: "a" }
layer { name: "ip2" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" }
  inner_product_param { num_output: 4 bias_filler { type: "gaussian" std: 1 } } }
"""


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(SHARED_NET)
    return str(path)


def test_save_hdf5_writes_caffes_layout_and_round_trips(tmp_path, net_file):
    rng.set_random_seed(3)
    net = caffe.Net(net_file, caffe.TRAIN)
    net.params["ip1"][0].diff[...] = 0.25
    path = tmp_path / "w.caffemodel.h5"
    net.save_hdf5(str(path), write_diff=True)
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == ["data", "diff"]
        assert sorted(handle["data"]) == ["input", "ip1", "ip2"]   # every layer has a group
        assert "data/ip1/relu" in handle
        assert sorted(handle["data/ip1"]) == ["0", "1", "relu"]
        assert sorted(handle["data/ip2"]) == ["1"]                # shared weight: owner only
        assert sorted(handle["diff/ip2"]) == ["0", "1"]           # diffs regardless of sharing
        assert handle["data/ip1/0"].dtype == np.float32
        np.testing.assert_array_equal(handle["data/ip1/0"][()], net.params["ip1"][0].data)
        np.testing.assert_array_equal(handle["diff/ip1/0"][()], 0.25)
    rng.set_random_seed(4)
    other = caffe.Net(net_file, caffe.TRAIN)
    other.load_hdf5(str(path))
    for name in net.params:
        for mine, theirs in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data)


def test_weights_written_by_h5py_in_caffes_layout_load_by_any_path(tmp_path, net_file):
    weight = np.arange(16, dtype=np.float64).reshape(4, 4)    # Caffe's double nets write f8
    path = tmp_path / "caffe_weights"                          # no extension: found by signature
    with h5py.File(path, "w") as handle:
        handle["data/ip1/0"] = weight
        handle["data/ip1/1"] = np.ones(4, np.float32)
        handle["data/ip2/1"] = np.full(4, 2, np.float32)
        handle["data/unknown_layer/0"] = np.zeros(3)           # ignored, as in Caffe
    for net in (caffe.Net(net_file, str(path), caffe.TEST), _loaded_by_copy_from(net_file, path)):
        np.testing.assert_array_equal(net.params["ip1"][0].data, weight)
        np.testing.assert_array_equal(net.params["ip2"][0].data, weight)   # shared
        np.testing.assert_array_equal(net.params["ip2"][1].data, 2)


def _loaded_by_copy_from(net_file, path):
    net = caffe.Net(net_file, caffe.TEST)
    net.copy_from(str(path))
    return net


@pytest.mark.parametrize("layout, expected", [
    ({"data/ip1/0": np.zeros((4, 5))}, r"param 0 of layer 'ip1'.*shape \(4, 5\).*\(4, 4\)"),
    ({f"data/ip1/{i}": np.zeros(4) for i in range(3)}, "'ip1' has 3 blobs in the file but 2"),
    ({"data/ip1/1": np.zeros(4)}, "layer 'ip1' lacks blob 0"),
    ({"weights/ip1/0": np.zeros(4)}, "no group 'data'"),
    ({"data/ip1/0": np.array([b"ab", b"cd"])}, r"has type \|S2"),
])
def test_bad_weight_files_are_clear_errors(tmp_path, net_file, layout, expected):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        for name, values in layout.items():
            handle[name] = values
    with pytest.raises(ModelFileError, match=expected):
        caffe.Net(net_file, caffe.TEST).load_hdf5(str(path))


def test_without_h5py_the_errors_name_the_extra(tmp_path, net_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    net = caffe.Net(net_file, caffe.TEST)
    with pytest.raises(CaffeError, match=r"needs h5py.*pip install -e '\.\[hdf5\]'"):
        net.save_hdf5(str(tmp_path / "w.h5"))
    assert "HDF5Data" not in caffe.layer_type_list()
    with pytest.raises(NetError, match=r"layer 'h5' \(type HDF5Data\): the HDF5Data layer needs "
                                       r"h5py.*pip install -e '\.\[hdf5\]'"):
        caffe.Net(_data_net(tmp_path, "list.txt"), caffe.TEST)


# ---- HDF5Data --------------------------------------------------------------------
def _write_set(path, first, rows):
    """Rows first..first+rows-1: data[i] = i in every element, label[i] = i (as int)."""
    index = np.arange(first, first + rows)
    with h5py.File(path, "w") as handle:
        handle["data"] = np.broadcast_to(index[:, None, None], (rows, 2, 3)).astype(np.float64)
        handle["label"] = index.astype(np.int64)


def _data_net(tmp_path, source, batch=4, shuffle=False, tops=("data", "label"), extra=""):
    path = tmp_path / "data_net.prototxt"
    top_lines = " ".join(f'top: "{t}"' for t in tops)
    path.write_text(f'layer {{ name: "h5" type: "HDF5Data" {top_lines} {extra} '
                    f'hdf5_data_param {{ source: "{source}" batch_size: {batch} '
                    f'shuffle: {str(shuffle).lower()} }} }}')
    return str(path)


@pytest.fixture
def two_files(tmp_path):
    """Files of rows 0..4 and 5..10, listed by a relative and an absolute path."""
    _write_set(tmp_path / "a.h5", 0, 5)
    _write_set(tmp_path / "b.h5", 5, 6)
    (tmp_path / "list.txt").write_text(f"a.h5\n{tmp_path / 'b.h5'}\n")
    return str(tmp_path / "list.txt")


def _labels(net, batches):
    out = []
    for _ in range(batches):
        net.forward()
        data, label = net.blobs["data"].data, net.blobs["label"].data
        assert data.shape == (4, 2, 3) and label.shape == (4,)
        np.testing.assert_array_equal(data, np.broadcast_to(label[:, None, None], data.shape))
        out += label.astype(int).tolist()
    return out


def test_hdf5_data_reads_files_in_order_and_wraps(tmp_path, two_files):
    net = caffe.Net(_data_net(tmp_path, two_files), caffe.TEST)
    assert _labels(net, 4) == list(range(11)) + list(range(5))


def test_hdf5_data_shuffle_permutes_rows_and_files_each_pass(tmp_path, two_files):
    rng.set_random_seed(11)
    labels = _labels(caffe.Net(_data_net(tmp_path, two_files, shuffle=True), caffe.TEST), 11)
    passes = [labels[i:i + 11] for i in range(0, 44, 11)]
    assert all(sorted(p) == list(range(11)) for p in passes)
    assert passes[0] != list(range(11)) and len({tuple(p) for p in passes}) > 1
    rng.set_random_seed(11)
    again = _labels(caffe.Net(_data_net(tmp_path, two_files, shuffle=True), caffe.TEST), 11)
    assert again == labels


def test_hdf5_data_train_ranks_read_disjoint_shares(tmp_path, two_files):
    shares = []
    try:
        for rank in range(2):
            set_default_partition(rank, 2)
            shares.append(_labels(caffe.Net(_data_net(tmp_path, two_files), caffe.TRAIN), 1))
    finally:
        set_default_partition(0, 1)
    assert shares == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_hdf5_data_resumes_on_the_rows_of_an_uninterrupted_run(tmp_path, two_files):
    """Rank 1 of 2, shuffled, iter_size 2: iteration 3 starts after 3 * 2 batches."""
    def rank_one_net():
        rng.set_random_seed(5)
        set_default_partition(1, 2)
        try:
            return caffe.Net(_data_net(tmp_path, two_files, shuffle=True), caffe.TRAIN)
        finally:
            set_default_partition(0, 1)
    straight = _labels(rank_one_net(), 9)
    resumed = rank_one_net()
    resumed.layers[0].restore_iteration(3, iter_size=2)
    assert _labels(resumed, 3) == straight[24:]


@pytest.mark.parametrize("setup, expected", [
    (lambda p: None, r"cannot read the HDF5 file list '.*missing.txt'"),
    (lambda p: (p / "missing.txt").write_text("\n"), ".*missing.txt' names no files"),
    (lambda p: (p / "missing.txt").write_text("nowhere.h5\n"),
     "cannot read HDF5 file 'nowhere.h5'"),
])
def test_bad_source_lists_are_clear_errors(tmp_path, setup, expected):
    setup(tmp_path)
    with pytest.raises(NetError, match=r"layer 'h5' \(type HDF5Data\): " + expected):
        caffe.Net(_data_net(tmp_path, str(tmp_path / "missing.txt")), caffe.TEST)


def test_bad_datasets_are_clear_errors(tmp_path, two_files):
    with pytest.raises(NetError, match=r"a.h5 has no dataset named weights.*it has data, label"):
        caffe.Net(_data_net(tmp_path, two_files, tops=("data", "weights")), caffe.TEST)
    with h5py.File(tmp_path / "a.h5", "a") as handle:
        del handle["label"]
        handle["label"] = np.zeros(4)
    with pytest.raises(NetError, match="dataset 'label' has 4 rows, 'data' has 5"):
        caffe.Net(_data_net(tmp_path, two_files), caffe.TEST)
    with pytest.raises(NetError, match="does not transform data"):
        caffe.Net(_data_net(tmp_path, two_files, extra="transform_param { scale: 2 }"),
                  caffe.TEST)


# ---- HDF5Output ------------------------------------------------------------------
def test_hdf5_output_writes_caffes_datasets_and_appends_batches(tmp_path):
    out = tmp_path / "out.h5"
    path = tmp_path / "out_net.prototxt"
    path.write_text(f"""
input: "x" input_shape {{ dim: 3 dim: 2 }}
input: "y" input_shape {{ dim: 3 }}
layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y"
  hdf5_output_param {{ file_name: "{out}" }} }}""")
    net = caffe.Net(str(path), caffe.TEST)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    net.forward(x=x, y=np.array([1, 2, 3]))
    net.forward(x=-x, y=np.array([4, 5, 6]))
    with h5py.File(out, "r") as handle:
        assert sorted(handle) == ["data", "label"]
        assert handle["data"].shape == (6, 2, 1, 1) and handle["label"].shape == (6, 1, 1, 1)
        np.testing.assert_array_equal(handle["data"][()].reshape(6, 2), np.concatenate([x, -x]))
        np.testing.assert_array_equal(handle["label"][()].ravel(), [1, 2, 3, 4, 5, 6])
