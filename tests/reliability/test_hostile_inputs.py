"""A corpus of hostile and damaged inputs: each is refused with a message naming the file.

Every case builds its own input in its tmp dir and returns what to run and what
the message must name.  The shared checks (hostile_helpers.check_answer): a
non-zero exit or a CaffeError, the file (and layer / line / record) named, no
traceback, every message line readable, an answer within a timeout, bounded
memory, and every file that existed before untouched with no temporary left.
Most cases run in-process; SUBPROCESS_CASES run the console command itself.
"""
import os
import shutil

import pytest

import pycaffe_mct as caffe
from pycaffe_mct import cli
from pycaffe_mct.commands.mct_train import mct_train_main
from pycaffe_mct.proto import caffe_pb2
from pycaffe_mct.proto_io import write_binary_proto
from pycaffe_mct.tools import compute_image_mean, convert_imageset
from hostile_helpers import (INPUT_LAYER, PEAK_BYTES, check_answer, data_net, files_under,
                             png_bytes, png_declaring, run_cli, run_in_process,
                             write_dummy_solver, write_lmdb)

CASES = {}
HUGE = "x" * 300_000


def case(function):
    CASES[function.__name__.removeprefix("case_")] = function
    return function


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A valid caffemodel and solverstate of the dummy net (2 iterations)."""
    directory = tmp_path_factory.mktemp("trained")
    solver = write_dummy_solver(directory)
    assert cli.main(["train", "--solver", str(solver)]) == 0
    return directory


def net_file(tmp, text, name="net.prototxt"):
    path = tmp / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def build_net(path, *args, **kwargs):
    return lambda: caffe.Net(str(path), caffe.TEST, *args, **kwargs)


def train(*argv):
    return lambda: cli.main(["train", *map(str, argv)])


# ---- prototxt ------------------------------------------------------------------

@case
def case_prototxt_syntax_error(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + 'layer { name: "ip" type: "InnerProduct"\n')
    return build_net(path), [f"{path}:2:"]


@case
def case_prototxt_not_utf8(tmp, trained):
    path = net_file(tmp, INPUT_LAYER.encode() + b'layer { name: "caf\xe9" type: "ReLU" }\n')
    return build_net(path), [f"{path}:2:", "not UTF-8"]


@case
def case_prototxt_random_bytes(tmp, trained):
    path = net_file(tmp, os.urandom(4096))
    return build_net(path), [str(path)]


@case
def case_prototxt_is_a_directory(tmp, trained):
    (tmp / "net.prototxt").mkdir()
    return build_net(tmp / "net.prototxt"), [str(tmp / "net.prototxt")]


@case
def case_unknown_layer_type(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + 'layer { name: "odd" type: "Convolutoin" '
                                       'bottom: "data" top: "odd" }\n')
    return build_net(path), [str(path), "layer 'odd'"]


@case
def case_negative_dimension(tmp, trained):
    path = net_file(tmp, INPUT_LAYER.replace("dim: 3", "dim: -3"))
    return build_net(path), [str(path), "layer 'data'", "negative"]


@case
def case_count_overflows_int64(tmp, trained):
    path = net_file(tmp, INPUT_LAYER.replace("dim: 2 dim: 3", "dim: 4294967296 dim: 4294967296"))
    return build_net(path), [str(path), "layer 'data'", "INT_MAX"]


@case
def case_count_beyond_int_max(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + 'layer { name: "ip" type: "InnerProduct" '
                    'bottom: "data" top: "ip" inner_product_param { num_output: 3000000000 } }\n')
    return build_net(path), [str(path), "layer 'ip'", "INT_MAX"]


@case
def case_forty_axes(tmp, trained):
    path = net_file(tmp, INPUT_LAYER.replace("dim: 2 dim: 3", "dim: 1 " * 40))
    return build_net(path), [str(path), "layer 'data'", "axes"]


@case
def case_huge_layer_name(tmp, trained):
    path = net_file(tmp, f'layer {{ name: "{HUGE}" type: "Nope" top: "x" }}\n')
    return build_net(path), [str(path), "characters left out"]


@case
def case_huge_unknown_field(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + f"{HUGE}: 1\n")
    return build_net(path), [f"{path}:2:"]


@case
def case_bottom_nobody_produced(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + 'layer { name: "r" type: "ReLU" bottom: "dat" top: "r" }\n')
    return build_net(path), [str(path), "layer 'r'", "dat"]


@case
def case_two_producers_of_one_top(tmp, trained):
    path = net_file(tmp, INPUT_LAYER + INPUT_LAYER.replace('name: "data"', 'name: "again"'))
    return build_net(path), [str(path), "layer 'again'"]


# ---- solver files ----------------------------------------------------------------

@case
def case_solver_not_utf8(tmp, trained):
    solver = write_dummy_solver(tmp)
    solver.write_bytes(solver.read_bytes() + b"# \xff\xfe\n")
    return train("--solver", solver), [f"{solver}:10:"]


@case
def case_solver_unknown_type(tmp, trained):
    solver = write_dummy_solver(tmp, type='"Sgd"')
    return train("--solver", solver), [f"{solver}:10", "Sgd"]


@case
def case_solver_net_missing(tmp, trained):
    solver = write_dummy_solver(tmp)
    os.remove(tmp / "net.prototxt")
    return train("--solver", solver), [f"{solver}:1", "net.prototxt"]


@case
def case_solver_syntax_error(tmp, trained):
    solver = write_dummy_solver(tmp, base_lr="fast")
    return train("--solver", solver), [f"{solver}:2:"]


@case
def case_solver_net_not_utf8(tmp, trained):
    solver = write_dummy_solver(tmp)
    net = tmp / "net.prototxt"
    net.write_bytes(b'name: "\xc3\x28"\n' + net.read_bytes())
    return train("--solver", solver), [f"{net}:1:"]


@case
def case_solver_missing(tmp, trained):
    return train("--solver", tmp / "nope.prototxt"), [str(tmp / "nope.prototxt")]


# ---- weights ---------------------------------------------------------------------

def _weights_case(tmp, trained, data):
    shutil.copy(trained / "net.prototxt", tmp / "net.prototxt")
    weights = tmp / "w.caffemodel"
    weights.write_bytes(data)
    return build_net(tmp / "net.prototxt", weights=str(weights)), [str(weights)]


@case
def case_weights_cut_short(tmp, trained):
    data = (trained / "snap_iter_2.caffemodel").read_bytes()
    return _weights_case(tmp, trained, data[:len(data) // 2])


@case
def case_weights_are_text(tmp, trained):
    return _weights_case(tmp, trained, b'name: "not binary"\nlayer { name: "ip" }\n')


@case
def case_weights_random_bytes(tmp, trained):
    return _weights_case(tmp, trained, os.urandom(3000))


def _weights_with_blob(tmp, trained, dims):
    model = caffe_pb2.NetParameter(name="tiny")
    layer = model.layer.add(name="ip", type="InnerProduct")
    layer.blobs.add().shape.dim.extend(dims)
    layer.blobs.add(data=[0, 0]).shape.dim.append(2)
    action, names = _weights_case(tmp, trained, model.SerializeToString())
    return action, names + ["'ip'", str(tuple(dims))]


@case
def case_weights_wrong_shape(tmp, trained):
    return _weights_with_blob(tmp, trained, [5, 5])


@case
def case_weights_huge_shape(tmp, trained):
    return _weights_with_blob(tmp, trained, [1 << 32, 1 << 32])


@case
def case_weights_negative_shape(tmp, trained):
    return _weights_with_blob(tmp, trained, [-2, 3])


@case
def case_weights_missing(tmp, trained):
    shutil.copy(trained / "net.prototxt", tmp / "net.prototxt")
    return build_net(tmp / "net.prototxt", weights=str(tmp / "no.caffemodel")), ["no.caffemodel"]


# ---- solver states -----------------------------------------------------------------

def _state_case(tmp, trained, data):
    solver = write_dummy_solver(tmp, max_iter=4)
    shutil.copy(trained / "snap_iter_2.caffemodel", tmp / "snap_iter_2.caffemodel")
    state = tmp / "snap_iter_2.solverstate"
    state.write_bytes(data)
    return train("--solver", solver, "--snapshot", state), [str(state)]


@case
def case_state_cut_short(tmp, trained):
    data = (trained / "snap_iter_2.solverstate").read_bytes()
    return _state_case(tmp, trained, data[:len(data) - 7])


@case
def case_state_random_bytes(tmp, trained):
    return _state_case(tmp, trained, os.urandom(500))


@case
def case_state_without_its_model(tmp, trained):
    state = caffe_pb2.SolverState(iter=2, learned_net=str(tmp / "gone.caffemodel"))
    state.history.add(data=[0] * 6).shape.dim.extend([2, 3])
    state.history.add(data=[0] * 2).shape.dim.append(2)
    action, names = _state_case(tmp, trained, state.SerializeToString())
    return action, names + ["gone.caffemodel"]


@case
def case_state_for_another_net(tmp, trained):
    state = caffe_pb2.SolverState(iter=2)
    state.history.add().shape.dim.extend([7, 7])
    return _state_case(tmp, trained, state.SerializeToString())


@case
def case_state_missing(tmp, trained):
    solver = write_dummy_solver(tmp)
    return train("--solver", solver, "--snapshot", tmp / "none.solverstate"), ["none.solverstate"]


# ---- LMDBs ----------------------------------------------------------------------

def _lmdb_case(tmp, damage):
    db = write_lmdb(tmp / "db", count=300)
    damage(db / "data.mdb")
    path = net_file(tmp, data_net(db))
    return build_net(path), [str(db / "data.mdb")]


@case
def case_lmdb_cut_short(tmp, trained):
    return _lmdb_case(tmp, lambda f: os.truncate(f, os.path.getsize(f) // 2))


@case
def case_lmdb_cut_to_one_page(tmp, trained):
    return _lmdb_case(tmp, lambda f: os.truncate(f, 4096))


@case
def case_lmdb_empty_file(tmp, trained):
    return _lmdb_case(tmp, lambda f: os.truncate(f, 0))


def _scribble_meta(path, page):
    with open(path, "r+b") as handle:
        handle.seek(page * 4096 + 16)
        handle.write(os.urandom(200))


@case
def case_lmdb_garbage_meta_pages(tmp, trained):
    return _lmdb_case(tmp, lambda f: (_scribble_meta(f, 0), _scribble_meta(f, 1)))


@case
def case_lmdb_meta_names_a_page_beyond_the_file(tmp, trained):
    def damage(path):
        with open(path, "r+b") as handle:
            for page in (0, 1):
                handle.seek(page * 4096 + 136)
                handle.write((1 << 40).to_bytes(8, "little"))
    return _lmdb_case(tmp, damage)


@case
def case_lmdb_directory_without_data(tmp, trained):
    (tmp / "db").mkdir()
    path = net_file(tmp, data_net(tmp / "db"))
    return build_net(path), [str(tmp / "db")]


@case
def case_lmdb_record_not_a_datum(tmp, trained):
    import lmdb
    db = tmp / "db"
    with lmdb.open(str(db), map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"00000000_a", os.urandom(64))
    path = net_file(tmp, data_net(db))
    return build_net(path), [str(db), "00000000_a"]


@case
def case_compute_image_mean_on_a_cut_lmdb(tmp, trained):
    db = write_lmdb(tmp / "db", count=300)
    os.truncate(db / "data.mdb", 8192)
    return (lambda: compute_image_mean.main([str(db), str(tmp / "mean.binaryproto")]),
            [str(db / "data.mdb")])


# ---- images and list files ---------------------------------------------------------

def _image_case(tmp, images, list_text=None, line=None):
    (tmp / "img").mkdir()
    for name, data in images.items():
        (tmp / "img" / name).write_bytes(data)
    listing = tmp / "list.txt"
    if list_text is None:
        list_text = "".join(f"{name} {i % 2}\n" for i, name in enumerate(images))
    listing.write_bytes(list_text if isinstance(list_text, bytes) else list_text.encode())
    path = net_file(tmp, data_net(listing, "ImageData", f'root_folder: "{tmp}/img/"'))

    def run():
        net = caffe.Net(str(path), caffe.TRAIN)
        for _ in range(3):        # the damaged image is read by the prefetch worker
            net.forward()
    return run, [f"{listing}:{line}" if line else str(listing)]


@case
def case_image_bomb_first(tmp, trained):
    action, names = _image_case(tmp, {"bomb.png": png_declaring(60000, 60000),
                                      "ok.png": png_bytes()}, line=1)
    return action, names + ["bomb.png", "PYCAFFE_MCT_MAX_IMAGE_PIXELS"]


@case
def case_image_bomb_in_prefetch_worker(tmp, trained):
    images = {f"ok{i}.png": png_bytes(i) for i in range(4)}
    images["bomb.png"] = png_declaring(20000, 20000)
    action, names = _image_case(tmp, images, line=5)
    return action, names + ["bomb.png", "decompression bomb"]


@case
def case_image_jpeg_cut_short(tmp, trained):
    from io import BytesIO
    from PIL import Image
    import numpy as np
    buffer = BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "JPEG")
    images = {f"ok{i}.png": png_bytes(i) for i in range(2)}
    images["cut.jpg"] = buffer.getvalue()[:60]
    action, names = _image_case(tmp, images, line=3)
    return action, names + ["cut.jpg"]


@case
def case_image_not_an_image(tmp, trained):
    action, names = _image_case(tmp, {"text.png": b"hello, I am text\n"}, line=1)
    return action, names + ["text.png"]


@case
def case_image_missing(tmp, trained):
    action, names = _image_case(tmp, {}, "gone.png 0\n", line=1)
    return action, names + ["gone.png"]


@case
def case_image_pixel_limit_not_a_number(tmp, trained):
    os.environ["PYCAFFE_MCT_MAX_IMAGE_PIXELS"] = "lots"      # the fixture below restores it
    action, names = _image_case(tmp, {"ok.png": png_bytes()}, line=1)
    return action, names + ["PYCAFFE_MCT_MAX_IMAGE_PIXELS"]


@case
def case_list_not_utf8(tmp, trained):
    action, names = _image_case(tmp, {"ok.png": png_bytes()}, b"ok.png 0\nb\xe4d.png 1\n", line=2)
    return action, names + ["UTF-8"]


@case
def case_list_label_not_integer(tmp, trained):
    action, names = _image_case(tmp, {"ok.png": png_bytes()}, "ok.png 0\nok.png one\n", line=2)
    return action, names + ["one"]


@case
def case_list_huge_line(tmp, trained):
    action, names = _image_case(tmp, {"ok.png": png_bytes()}, f"ok.png 0\nok.png {HUGE}\n",
                                line=2)
    return action, names + ["characters left out"]


@case
def case_convert_list_not_utf8(tmp, trained):
    (tmp / "list.txt").write_bytes(b"a.png 0\n\xff.png 1\n")
    return (lambda: convert_imageset.main([f"{tmp}/", str(tmp / "list.txt"), str(tmp / "db")]),
            [f"{tmp / 'list.txt'}:2:"])


@case
def case_convert_into_an_existing_database(tmp, trained):
    write_lmdb(tmp / "db")
    (tmp / "a.png").write_bytes(png_bytes())
    (tmp / "list.txt").write_text("a.png 0\n")
    return (lambda: convert_imageset.main([f"{tmp}/", str(tmp / "list.txt"), str(tmp / "db")]),
            [str(tmp / "db")])


# ---- MCT configurations --------------------------------------------------------------

def mct_solver(tmp, aux_prefix="aux", primary_prefix="primary", extra=""):
    path = tmp / "mct.prototxt"
    model = 'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 2'
    data = 'type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 2 }'
    path.write_text(f"""mct_param {{
  aux_solver_param {{ {model} }}
  primary_solver_param {{ {model} }}
  clean_data {{ name: "clean" {data} }}
  noisy_data {{ name: "noisy" {data} }}
  selection {{ noise_rate: 0.2 }}
  aux_snapshot_prefix: "{tmp}/{aux_prefix}"
  primary_snapshot_prefix: "{tmp}/{primary_prefix}"
  {extra}
}}
""")
    return path


@case
def case_mct_same_snapshot_prefix(tmp, trained):
    solver = mct_solver(tmp, "snap/model", "snap/../snap/model")
    return lambda: mct_train_main(["--solver", str(solver)]), [str(solver), "aux", "primary"]


@case
def case_mct_log_flag_is_a_model_log(tmp, trained):
    solver = mct_solver(tmp)
    return (lambda: mct_train_main(["--solver", str(solver), "--log", str(tmp / "aux.log")]),
            [str(solver), "--log"])


@case
def case_mct_aux_prefix_is_the_noise_only_baseline(tmp, trained):
    solver = mct_solver(tmp, "primary_noise_only", extra="compare_noise_only: true")
    return lambda: mct_train_main(["--solver", str(solver)]), [str(solver), "noise-only"]


@case
def case_mct_label_list_not_utf8(tmp, trained):
    (tmp / "noisy.txt").write_bytes(b"a.png 1\n\x80.png 2\n")
    (tmp / "clean.txt").write_text("a.png 1\n")
    solver = mct_solver(tmp).read_text().replace(
        "selection { noise_rate: 0.2 }",
        f'noisy_label_list: "{tmp}/noisy.txt" clean_label_list: "{tmp}/clean.txt"')
    (tmp / "mct.prototxt").write_text(solver)
    return (lambda: mct_train_main(["--solver", str(tmp / "mct.prototxt")]),
            [f"{tmp / 'noisy.txt'}:2:"])


@case
def case_mct_solver_not_utf8(tmp, trained):
    solver = mct_solver(tmp)
    solver.write_bytes(b"# r\xe9sum\xe9\n" + solver.read_bytes())
    return lambda: mct_train_main(["--solver", str(solver)]), [f"{solver}:1:"]


# ---- CLI flags ---------------------------------------------------------------------

@case
def case_flag_iterations_not_a_number(tmp, trained):
    return train("--solver", write_dummy_solver(tmp), "--iterations", "many"), ["--iterations"]


@case
def case_flag_snapshot_and_weights(tmp, trained):
    return (train("--solver", write_dummy_solver(tmp), "--snapshot", "a.solverstate",
                  "--weights", "b.caffemodel"), ["--snapshot", "--weights"])


@case
def case_flag_log_into_a_file_as_directory(tmp, trained):
    (tmp / "blocker").write_text("a file where a directory should be\n")
    return (train("--solver", write_dummy_solver(tmp), "--log", tmp / "blocker" / "train.log"),
            [str(tmp / "blocker")])


@case
def case_flag_unknown_command(tmp, trained):
    return lambda: cli.main(["trian"]), ["trian"]


@pytest.fixture
def pixel_limit_restored():
    saved = os.environ.get("PYCAFFE_MCT_MAX_IMAGE_PIXELS")
    yield
    if saved is None:
        os.environ.pop("PYCAFFE_MCT_MAX_IMAGE_PIXELS", None)
    else:
        os.environ["PYCAFFE_MCT_MAX_IMAGE_PIXELS"] = saved


def test_the_corpus_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_refused_clearly(name, tmp_path, trained, capsys,
                                         pixel_limit_restored):
    (tmp_path / "keep.caffemodel").write_bytes((trained / "snap_iter_2.caffemodel").read_bytes())
    action, names = CASES[name](tmp_path, trained)
    before = files_under(tmp_path)
    code, message, err, peak = run_in_process(action, capsys)
    check_answer(code, message, err, names, before, tmp_path)
    assert peak < PEAK_BYTES, peak


# The commands themselves, where only a separate process shows the exit status,
# a signal death (SIGBUS) or a traceback on stderr.
SUBPROCESS_CASES = ["lmdb_cut_short", "mct_same_snapshot_prefix", "image_bomb_in_prefetch_worker",
                    "solver_not_utf8"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_console_command_exits_with_one_error_line(name, tmp_path, trained):
    action, names = CASES[name](tmp_path, trained)
    before = files_under(tmp_path)
    argv = _command_for(name, tmp_path)
    code, err = run_cli(argv)
    assert code == 1, (code, err)            # not a signal (negative), not 0
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    check_answer(code, error_lines[0], err, names, before, tmp_path)


def _command_for(name, tmp):
    if name.startswith("mct"):
        return ["mct_train", "--solver", tmp / "mct.prototxt"]
    if name.startswith("solver"):
        return ["pycaffe_mct", "train", "--solver", tmp / "solver.prototxt"]
    solver = write_dummy_solver(tmp, net_text=(tmp / "net.prototxt").read_text(), max_iter=4,
                                name="train_solver.prototxt")
    return ["pycaffe_mct", "train", "--solver", solver]
