"""compute_image_mean reproduces Caffe's mean file and its logged channel means."""
import pytest

from pycaffe_mct.tools.compute_image_mean import main


def test_mean_file_is_byte_identical_to_caffes(fixtures_dir, tmp_path, capsys):
    assert main([str(fixtures_dir / "resized_lmdb"), str(tmp_path / "mean.binaryproto")]) == 0
    assert (tmp_path / "mean.binaryproto").read_bytes() == \
        (fixtures_dir / "mean_resized.binaryproto").read_bytes()
    err = capsys.readouterr().err
    for c, value in enumerate(("128.101", "115.383", "126.741")):
        assert f"mean_value channel [{c}]: {value}" in err


def test_encoded_database_gives_the_same_mean(fixtures_dir, tmp_path):
    from pycaffe_mct.tools.compute_image_mean import compute_mean
    import numpy as np
    from pycaffe_mct.data import LMDBWriter, decode_image, image_to_datum
    from pycaffe_mct.data.image import resize_linear
    from data_helpers import golden_records
    with LMDBWriter(tmp_path / "db") as writer:
        for key, datum in golden_records(fixtures_dir / "encoded_lmdb"):
            image = resize_linear(decode_image(datum.data), 24, 20)
            writer.put(key, image_to_datum(image, datum.label).SerializeToString())
    ours, count = compute_mean(tmp_path / "db")
    reference, _ = compute_mean(fixtures_dir / "resized_lmdb")
    assert count == 12 and np.array_equal(ours, reference)


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is not an LMDB"),
])
def test_bad_database_is_named(tmp_path, capsys, make, message):
    make(tmp_path / "db")
    assert main([str(tmp_path / "db")]) == 1
    assert message in capsys.readouterr().err
