"""convert_imageset against Caffe's own LMDBs, byte for byte, and its bad-input paths."""
import shutil

import numpy as np
import pytest
from data_helpers import golden_records, raw_pixels

from pycaffe_mct.data import decode_image
from pycaffe_mct.tools.convert_imageset import main


def convert(fixtures_dir, out, *flags):
    return main(list(flags) + [f"{fixtures_dir}/images/", f"{fixtures_dir}/images/list.txt",
                               str(out)])


@pytest.mark.parametrize("golden,flags", [
    ("raw_lmdb", []),
    ("resized_lmdb", ["--resize_height=24", "--resize_width=20"]),
    ("gray_lmdb", ["-gray", "--resize_height", "16", "-resize_width=16"]),
])
def test_records_are_byte_identical_to_caffes(fixtures_dir, tmp_path, golden, flags):
    assert convert(fixtures_dir, tmp_path / "db", *flags, "--jobs=2") == 0
    assert golden_records(tmp_path / "db") == golden_records(fixtures_dir / golden)


def test_encoded_records_store_pngs_as_caffe_and_decode_alike(fixtures_dir, tmp_path):
    assert convert(fixtures_dir, tmp_path / "db", "--encoded", "--encode_type=png") == 0
    ours, theirs = golden_records(tmp_path / "db"), golden_records(fixtures_dir / "encoded_lmdb")
    for (key, mine), (golden_key, golden) in zip(ours, theirs):
        assert key == golden_key and mine.encoded and mine.label == golden.label
        if key.endswith(b".png"):                     # the file itself, as Caffe stores it
            assert mine == golden
        np.testing.assert_array_equal(decode_image(mine.data), decode_image(golden.data))


def test_shuffle_keeps_every_record_under_its_new_line_number(fixtures_dir, tmp_path):
    assert convert(fixtures_dir, tmp_path / "db", "--shuffle", "--jobs=1") == 0
    keys = [key.decode() for key, _ in golden_records(tmp_path / "db")]
    assert [k[:8] for k in keys] == [f"{i:08d}" for i in range(12)]
    assert sorted(k[9:] for k in keys) == sorted(
        line.rsplit(" ", 1)[0] for line in (fixtures_dir / "images/list.txt").read_text().split("\n") if line)


@pytest.fixture
def bad_folder(tmp_path, fixtures_dir):
    """Two good images, a missing one, a text file, a truncated JPEG."""
    root = tmp_path / "imgs"
    root.mkdir()
    shutil.copy(fixtures_dir / "images/pic_01.png", root / "good.png")
    shutil.copy(fixtures_dir / "images/pic_03.jpg", root / "good.jpg")
    (root / "notes.jpg").write_text("not an image")
    jpeg = (fixtures_dir / "images/pic_06.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (tmp_path / "list.txt").write_text(
        "good.png 1\nmissing.png 0\nnotes.jpg 2\ncut.jpg 0\ngood.jpg 2\n")
    return root


def test_bad_images_are_skipped_warned_and_counted(bad_folder, tmp_path, capsys):
    assert main([f"{bad_folder}/", str(tmp_path / "list.txt"), str(tmp_path / "db")]) == 0
    out, err = capsys.readouterr()
    assert "Could not open or find file" in err and "missing.png" in err
    assert "notes.jpg" in err and "cut.jpg" in err
    assert "wrote 2 images" in out and "skipped 3" in out
    keys = [key for key, _ in golden_records(tmp_path / "db")]
    assert keys == [b"00000000_good.png", b"00000004_good.jpg"]


def test_non_integer_label_names_file_and_line(bad_folder, tmp_path, capsys):
    (tmp_path / "list.txt").write_text("good.png 1\ngood.jpg cat\n")
    assert main([f"{bad_folder}/", str(tmp_path / "list.txt"), str(tmp_path / "db")]) == 1
    assert "list.txt:2: label 'cat' is not an integer" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_check_size_names_the_odd_image(fixtures_dir, tmp_path, capsys):
    assert convert(fixtures_dir, tmp_path / "db", "--check_size") == 1
    assert "list.txt:2: image 'pic_01.png' has data size 2964, the first image had 3888" \
        in capsys.readouterr().err


def test_existing_database_is_not_overwritten(fixtures_dir, tmp_path, capsys):
    (tmp_path / "db").mkdir()
    assert convert(fixtures_dir, tmp_path / "db") == 1
    assert "already exists" in capsys.readouterr().err


def test_leveldb_backend_is_refused(fixtures_dir, tmp_path, capsys):
    assert convert(fixtures_dir, tmp_path / "db", "--backend=leveldb") == 1
    assert "use --backend lmdb" in capsys.readouterr().err


def test_help_lists_caffes_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--gray", "--shuffle", "--backend", "--resize_width", "--resize_height",
                 "--check_size", "--encoded", "--encode_type"):
        assert flag in text


def test_nogray_turns_the_flag_off(fixtures_dir, tmp_path):
    assert convert(fixtures_dir, tmp_path / "db", "--gray", "--nogray") == 0
    assert golden_records(tmp_path / "db")[0][1].channels == 3
    assert raw_pixels(golden_records(tmp_path / "db")[0][1]).shape == (24, 54, 3)


def test_boolean_flag_with_false_value(fixtures_dir, tmp_path):
    assert convert(fixtures_dir, tmp_path / "db", "-gray=false") == 0
    assert golden_records(tmp_path / "db")[0][1].channels == 3


def test_clothing1m_style_folder_trains_through_the_data_layer(tmp_path):
    """Nested JPEG folders and a noisy_label_kv.txt-style list, converted resized and
    encoded, read back by a Data layer with random crops."""
    from layer_helpers import empty_tops, make_layer
    from PIL import Image
    generator = np.random.default_rng(0)
    lines = []
    for i in range(6):
        folder = tmp_path / "images" / str(i % 3) / f"{i:02d}"
        folder.mkdir(parents=True)
        pixels = generator.integers(0, 256, (30 + i, 40, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
        lines.append(f"images/{i % 3}/{i:02d}/{i}.jpg {i % 14}\n")
    (tmp_path / "noisy_label_kv.txt").write_text("".join(lines))
    assert main(["--resize_height=24", "--resize_width=24", "--shuffle", "--encoded",
                 "--encode_type=jpg", f"{tmp_path}/", str(tmp_path / "noisy_label_kv.txt"),
                 str(tmp_path / "train_lmdb")]) == 0
    layer = make_layer(f'name: "d" type: "Data" top: "data" top: "label" '
                       f'transform_param {{ crop_size: 20 mirror: true }} '
                       f'data_param {{ source: "{tmp_path / "train_lmdb"}" batch_size: 6 }}')
    tops = empty_tops(2)
    layer.setup([], tops)
    layer.forward([], tops)
    assert tops[0].shape == (6, 3, 20, 20)
    assert sorted(tops[1].data.astype(int)) == sorted(i % 14 for i in range(6))
    layer.close()
