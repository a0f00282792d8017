"""Data, ImageData and MemoryData layers: Caffe's tops, golden batches, bad input."""
import gc
import threading

import numpy as np
import pytest
from data_helpers import write_indexed_lmdb
from layer_helpers import empty_tops, make_layer

from pycaffe_mct import rng
from pycaffe_mct.data import set_default_partition
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.layer import TEST, TRAIN


def data_layer(source, batch_size, transform="", phase=TRAIN, extra=""):
    text = (f'name: "d" type: "Data" top: "data" top: "label" '
            f'transform_param {{ {transform} }} '
            f'data_param {{ source: "{source}" batch_size: {batch_size} backend: LMDB {extra} }}')
    layer, tops = make_layer(text, phase), empty_tops(2)
    layer.setup([], tops)
    return layer, tops


def labels_of(layer, tops, batches):
    out = []
    for _ in range(batches):
        layer.forward([], tops)
        out += tops[1].data.astype(int).tolist()
    return out


@pytest.fixture(autouse=True)
def seeded():
    rng.set_random_seed(7)
    yield
    set_default_partition(0, 1)


def test_golden_batch_of_resized_lmdb(fixtures_dir):
    """Caffe's small_input.npy: the first 4 Datums, mean-subtracted and scaled."""
    layer, tops = data_layer(fixtures_dir / "resized_lmdb", 4,
                             "scale: 0.00390625 mean_value: 104 mean_value: 117 "
                             "mean_value: 123", phase=TEST)
    assert tops[0].shape == (4, 3, 24, 20) and tops[1].shape == (4,)
    layer.forward([], tops)
    np.testing.assert_array_equal(tops[0].data, np.load(fixtures_dir / "small_input.npy"))
    np.testing.assert_array_equal(tops[1].data, [0, 1, 2, 0])
    layer.close()


def test_reading_wraps_around_epochs(tmp_path):
    layer, tops = data_layer(write_indexed_lmdb(tmp_path / "db", 5), 3)
    assert labels_of(layer, tops, 3) == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    np.testing.assert_array_equal(tops[0].data[:, 0, 0, 0], [1, 2, 3])
    layer.close()


def test_ranks_read_disjoint_shares(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 7)
    seen = []
    for rank in range(3):
        set_default_partition(rank, 3)
        layer, tops = data_layer(source, 1)
        seen.append(labels_of(layer, tops, 3 if rank == 0 else 2))
        layer.close()
    assert seen == [[0, 3, 6], [1, 4], [2, 5]]


def test_test_phase_reads_everything_on_every_rank(tmp_path):
    set_default_partition(1, 2)
    layer, tops = data_layer(write_indexed_lmdb(tmp_path / "db", 4), 4, phase=TEST)
    assert labels_of(layer, tops, 1) == [0, 1, 2, 3]
    layer.close()


def test_restore_iteration_gives_the_uninterrupted_batches(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 9, shape=(2, 6, 6))
    transform = "crop_size: 3 mirror: true scale: 0.5"
    straight, tops = data_layer(source, 2, transform)
    batches = []
    for _ in range(5):
        straight.forward([], tops)
        batches.append((tops[0].data.copy(), tops[1].data.copy()))
    resumed, tops = data_layer(source, 2, transform, extra="")
    resumed.restore_iteration(2, iter_size=2)
    resumed.forward([], tops)
    np.testing.assert_array_equal(tops[0].data, batches[4][0])
    np.testing.assert_array_equal(tops[1].data, batches[4][1])
    straight.close(), resumed.close()


def test_rand_skip_is_deterministic_for_a_seed(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 50)
    firsts = []
    for _ in range(2):
        layer, tops = data_layer(source, 1, extra="rand_skip: 40")
        firsts += labels_of(layer, tops, 1)
        layer.close()
    assert firsts[0] == firsts[1] and 0 <= firsts[0] < 40


def test_leveldb_backend_is_refused_with_the_fix(tmp_path):
    text = 'name: "d" type: "Data" top: "data" data_param { source: "x" batch_size: 1 backend: LEVELDB }'
    with pytest.raises(CaffeError, match="layer 'd'.*LEVELDB.*convert_imageset --backend lmdb"):
        make_layer(text).setup([], empty_tops(1))


def test_missing_source_names_layer_and_source(tmp_path):
    with pytest.raises(CaffeError, match=f"layer 'd'.*'{tmp_path}/none' does not exist"):
        data_layer(tmp_path / "none", 2)


def test_empty_source_is_named(tmp_path):
    import lmdb
    lmdb.open(str(tmp_path / "empty")).close()
    with pytest.raises(CaffeError, match="empty' holds no records"):
        data_layer(tmp_path / "empty", 2)


def test_inconsistent_shapes_name_source_and_key(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 3, shapes=[(1, 4, 4), (1, 5, 4), (1, 4, 4)])
    layer, tops = data_layer(source, 2)
    with pytest.raises(CaffeError, match=r"db', key 00000001_img1.png: image shape "
                                         r"\(1, 5, 4\) differs from \(1, 4, 4\)"):
        layer.forward([], tops)
    layer.close()


def test_crop_makes_mixed_sizes_fine(fixtures_dir):
    layer, tops = data_layer(fixtures_dir / "raw_lmdb", 2, "crop_size: 16", phase=TEST)
    layer.forward([], tops)
    assert tops[0].shape == (2, 3, 16, 16)
    layer.close()


def test_encoded_lmdb_reads_like_raw(fixtures_dir):
    raw, raw_tops = data_layer(fixtures_dir / "raw_lmdb", 1, phase=TEST)
    enc, enc_tops = data_layer(fixtures_dir / "encoded_lmdb", 1, phase=TEST)
    for _ in range(3):
        raw.forward([], raw_tops), enc.forward([], enc_tops)
        np.testing.assert_array_equal(raw_tops[0].data, enc_tops[0].data)
    raw.close(), enc.close()


def test_force_gray_decodes_encoded_images_to_one_channel(fixtures_dir):
    layer, tops = data_layer(fixtures_dir / "encoded_lmdb", 1, "force_gray: true", phase=TEST)
    assert tops[0].shape[1] == 1
    layer.close()


def test_layer_threads_end_when_the_layer_is_dropped(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 4)
    before = threading.active_count()
    layer, tops = data_layer(source, 2)
    layer.forward([], tops)
    del layer
    gc.collect()
    assert threading.active_count() == before


def image_data_layer(fixtures_dir, params, transform="", phase=TRAIN):
    text = (f'name: "img" type: "ImageData" top: "data" top: "label" '
            f'transform_param {{ {transform} }} image_data_param {{ {params} }}')
    layer, tops = make_layer(text, phase), empty_tops(2)
    layer.setup([], tops)
    return layer, tops


def _list_params(fixtures_dir, extra=""):
    return (f'source: "{fixtures_dir}/images/list.txt" root_folder: "{fixtures_dir}/images/" '
            f'batch_size: 3 {extra}')


def test_image_data_resizes_and_matches_caffes_resized_lmdb(fixtures_dir):
    images, tops = image_data_layer(fixtures_dir, _list_params(
        fixtures_dir, "new_height: 24 new_width: 20"), phase=TEST)
    golden, golden_tops = data_layer(fixtures_dir / "resized_lmdb", 3, phase=TEST)
    images.forward([], tops), golden.forward([], golden_tops)
    np.testing.assert_array_equal(tops[0].data, golden_tops[0].data)
    np.testing.assert_array_equal(tops[1].data, golden_tops[1].data)
    images.close(), golden.close()


def test_image_data_gray_and_shuffle(fixtures_dir):
    layer, tops = image_data_layer(fixtures_dir, _list_params(
        fixtures_dir, "new_height: 8 new_width: 8 is_color: false shuffle: true"))
    assert tops[0].shape == (3, 1, 8, 8)
    labels = labels_of(layer, tops, 4)
    assert sorted(labels) == sorted([0, 1, 2] * 4) and labels != [0, 1, 2] * 4
    layer.close()


def test_image_data_missing_image_names_list_line(tmp_path, fixtures_dir):
    listing = tmp_path / "list.txt"
    listing.write_text("pic_01.png 1\nnot_there.png 2\n")
    layer, tops = image_data_layer(fixtures_dir, f'source: "{listing}" root_folder: '
                                   f'"{fixtures_dir}/images/" batch_size: 2 new_height: 4 '
                                   f'new_width: 4')
    with pytest.raises(CaffeError, match=r"list.txt:2: image 'not_there.png': could not load"):
        layer.forward([], tops)
    layer.close()


def test_image_data_bad_label_names_list_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("a.png 1\nb.png two\n")
    with pytest.raises(CaffeError, match=r"layer 'img'.*list.txt:2: label 'two' is not an int"):
        image_data_layer(tmp_path, f'source: "{listing}" batch_size: 1')


def test_image_data_needs_both_new_sizes(fixtures_dir):
    with pytest.raises(CaffeError, match="new_height and new_width must be set together"):
        image_data_layer(fixtures_dir, _list_params(fixtures_dir, "new_height: 4"))


def memory_layer(batch_size=2):
    text = ('name: "mem" type: "MemoryData" top: "data" top: "label" '
            f'memory_data_param {{ batch_size: {batch_size} channels: 1 height: 2 width: 3 }}')
    layer, tops = make_layer(text), empty_tops(2)
    layer.setup([], tops)
    return layer, tops


def test_memory_data_serves_batches_in_a_cycle():
    layer, tops = memory_layer()
    assert tops[0].shape == (2, 1, 2, 3) and tops[1].shape == (2,)
    data = np.arange(24, dtype=np.float32).reshape(4, 1, 2, 3)
    labels = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    layer.set_input_arrays(data, labels)
    seen = []
    for _ in range(3):
        layer.forward([], tops)
        seen.append(tops[1].data.ravel().tolist())
        np.testing.assert_array_equal(tops[0].data, data[int(seen[-1][0]):int(seen[-1][0]) + 2])
    assert seen == [[0, 1], [2, 3], [0, 1]] and tops[1].shape == (2, 1, 1, 1)


@pytest.mark.parametrize("data,labels,message", [
    (np.zeros((3, 1, 2, 3), np.float32), np.zeros(3, np.float32), "multiple of batch size"),
    (np.zeros((2, 1, 2, 2), np.float32), np.zeros(2, np.float32), r"expected \(N,\)"),
    (np.zeros((2, 1, 2, 3), np.float64), np.zeros(2, np.float32), "float32"),
    (np.zeros((2, 1, 2, 3), np.float32), np.zeros(4, np.float32), "same first dimension"),
])
def test_memory_data_bad_arrays_are_named(data, labels, message):
    layer, _ = memory_layer()
    with pytest.raises(CaffeError, match=f"layer 'mem'.*{message}"):
        layer.set_input_arrays(data, labels)


def test_memory_data_forward_before_arrays_is_an_error():
    layer, tops = memory_layer()
    with pytest.raises(CaffeError, match="needs set_input_arrays"):
        layer.forward([], tops)


def test_net_set_input_arrays_feeds_the_first_layer():
    import pycaffe_mct as caffe
    from pycaffe_mct.net import Net
    from pycaffe_mct.proto import caffe_pb2
    from pycaffe_mct.proto_io import parse_prototxt
    text = ('layer { name: "mem" type: "MemoryData" top: "data" top: "label" '
            'memory_data_param { batch_size: 2 channels: 1 height: 1 width: 2 } }')
    net = Net(parse_prototxt(text, caffe_pb2.NetParameter()), caffe.TEST)
    net.set_input_arrays(np.ones((2, 1, 1, 2), np.float32), np.array([3, 4], np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data.ravel(), [3, 4])



def test_resumed_solver_reads_the_batches_of_an_uninterrupted_run(tmp_path):
    """Snapshot at 2 of 4 iterations (iter_size 2, random crops and mirrors), restore in a
    fresh solver: its weights equal those of the straight run."""
    import io

    from pycaffe_mct.solvers import get_solver
    from pycaffe_mct.solvers.log import GlogWriter
    source = write_indexed_lmdb(tmp_path / "db", 11, shape=(1, 5, 5))
    (tmp_path / "net.prototxt").write_text(f"""
      layer {{ name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ crop_size: 3 mirror: true scale: 0.01 }}
        data_param {{ source: "{source}" batch_size: 3 backend: LMDB }} }}
      layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 11 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
      layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
    """)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}" base_lr: 0.5 lr_policy: "fixed" max_iter: 4 '
        f'iter_size: 2 display: 0 random_seed: 3 snapshot_prefix: "{tmp_path / "snap"}"')

    def solver():
        return get_solver(str(tmp_path / "solver.prototxt"), log=GlogWriter(stream=io.StringIO()))
    straight = solver()
    straight.step(4)
    first = solver()
    first.step(2)
    state = first.snapshot()
    resumed = solver()
    resumed.restore(state)
    resumed.step(2)
    np.testing.assert_array_equal(resumed.net.params["ip"][0].data,
                                  straight.net.params["ip"][0].data)


def test_encoded_records_are_decoded_in_a_worker_process(fixtures_dir):
    layer, tops = data_layer(fixtures_dir / "encoded_lmdb", 1, phase=TEST)
    assert layer.prefetcher.process
    layer.forward([], tops)
    assert tops[0].shape == (1, 3, 24, 54)
    layer.close()
    assert not layer.prefetcher.running


def test_rank_beyond_the_data_set_is_told(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 2)
    set_default_partition(3, 4)
    with pytest.raises(CaffeError, match="layer 'd'.*rank 3 of 4 gets no records.*only 2"):
        data_layer(source, 1)
    set_default_partition(0, 1)
    layer, tops = data_layer(source, 2)            # the failed set-up released the database
    assert labels_of(layer, tops, 1) == [0, 1]
    layer.close()


def test_crop_larger_than_records_is_refused_at_setup(tmp_path):
    source = write_indexed_lmdb(tmp_path / "db", 2, shape=(1, 4, 4))
    with pytest.raises(CaffeError, match="layer 'd'.*crop_size 5 is larger than the 4x4"):
        data_layer(source, 1, "crop_size: 5")


def test_data_layer_warns_about_an_interrupted_conversion(tmp_path, capsys):
    from pycaffe_mct.data import LMDBWriter, image_to_datum, key_for
    with pytest.raises(KeyboardInterrupt):
        with LMDBWriter(tmp_path / "db") as writer:
            for i in range(3):
                image = np.zeros((2, 2, 1), np.uint8)
                writer.put(key_for(i, "x.png"), image_to_datum(image, i).SerializeToString())
            raise KeyboardInterrupt
    layer, tops = data_layer(tmp_path / "db", 3)
    assert labels_of(layer, tops, 1) == [0, 1, 2]
    assert "interrupted conversion" in capsys.readouterr().err
    layer.close()
