"""LMDB reader and writer: read-only access, map growth, interrupted conversions, bad sources."""
import os
import subprocess
import sys
import textwrap

import lmdb
import numpy as np
import pytest
from data_helpers import golden_records, write_indexed_lmdb

from pycaffe_mct.data import LMDBReader, LMDBWriter, datum_pixels, parse_datum
from pycaffe_mct.data.lmdb_io import INCOMPLETE_MARKER
from pycaffe_mct.errors import CaffeError


def test_reader_gives_caffes_records_by_index(fixtures_dir):
    golden = golden_records(fixtures_dir / "raw_lmdb")
    reader = LMDBReader(fixtures_dir / "raw_lmdb")
    assert len(reader) == len(golden) == 12 and reader.note is None
    with reader.transaction() as txn:
        for index in (0, 5, 11):
            key, datum = golden[index]
            assert reader.key(index) == key
            assert parse_datum(reader.read(txn, index), "x") == datum
    reader.close()


def test_reading_does_not_modify_the_database(tmp_path):
    path = write_indexed_lmdb(tmp_path / "db", 5)
    before = {name: (path / name).read_bytes() for name in os.listdir(path)}
    reader = LMDBReader(path)
    with reader.transaction() as txn:
        [reader.read(txn, i) for i in range(5)]
    reader.close()
    assert {name: (path / name).read_bytes() for name in os.listdir(path)} == before


def test_writer_grows_the_map_when_it_fills(tmp_path):
    value = bytes(range(256)) * 16                         # 4 KB per record
    with LMDBWriter(tmp_path / "db", batch=50, map_size=64 * 1024) as writer:
        for i in range(200):
            writer.put(b"%05d" % i, value)
    reader = LMDBReader(tmp_path / "db")
    assert len(reader) == 200
    assert reader.env.info()["map_size"] > 64 * 1024
    assert not (tmp_path / "db" / INCOMPLETE_MARKER).exists()
    reader.close()


def test_killed_conversion_leaves_committed_prefix_and_says_so(tmp_path):
    script = textwrap.dedent(f"""
        import os
        from pycaffe_mct.data import LMDBWriter
        writer = LMDBWriter({str(tmp_path / 'db')!r}, batch=10)
        for i in range(25):
            writer.put(b"%03d" % i, b"x")
        os._exit(1)          # killed mid-conversion: the last 5 records never commit
    """)
    subprocess.run([sys.executable, "-c", script], check=False, cwd=os.getcwd())
    reader = LMDBReader(tmp_path / "db")
    assert len(reader) == 20
    assert "interrupted conversion" in reader.note and "20 records" in reader.note
    reader.close()
    with pytest.raises(CaffeError, match="interrupted conversion.*20 records.*delete it"):
        LMDBWriter(tmp_path / "db")


def test_exception_inside_writer_commits_pending_and_keeps_marker(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with LMDBWriter(tmp_path / "db", batch=10) as writer:
            for i in range(13):
                writer.put(b"%03d" % i, b"x")
            raise KeyboardInterrupt
    reader = LMDBReader(tmp_path / "db")
    assert len(reader) == 13 and "13 records" in reader.note
    reader.close()


def test_writer_refuses_an_existing_database(tmp_path):
    write_indexed_lmdb(tmp_path / "db", 1)
    with pytest.raises(CaffeError, match="already exists"):
        LMDBWriter(tmp_path / "db")


def test_missing_source_is_named(tmp_path):
    with pytest.raises(CaffeError, match=f"'{tmp_path / 'nope'}' does not exist"):
        LMDBReader(tmp_path / "nope")


def test_empty_database_is_named(tmp_path):
    lmdb.open(str(tmp_path / "empty")).close()
    with pytest.raises(CaffeError, match="empty' holds no records"):
        LMDBReader(tmp_path / "empty")


def test_leveldb_directory_is_refused_with_the_fix(tmp_path):
    (tmp_path / "ldb").mkdir()
    (tmp_path / "ldb" / "CURRENT").write_text("MANIFEST-000001\n")
    with pytest.raises(CaffeError, match="LevelDB: not supported.*--backend lmdb"):
        LMDBReader(tmp_path / "ldb")


def test_directory_without_lmdb_is_refused(tmp_path):
    with pytest.raises(CaffeError, match="is not an LMDB"):
        LMDBReader(tmp_path)


def test_datum_with_wrong_byte_count_names_the_record():
    from pycaffe_mct.proto import caffe_pb2
    datum = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"abc")
    with pytest.raises(CaffeError, match="src, key k: datum has 3 bytes.*4 expected"):
        datum_pixels(datum, "src, key k")


def test_float_datum_is_read_as_float():
    from pycaffe_mct.proto import caffe_pb2
    datum = caffe_pb2.Datum(channels=1, height=1, width=2, float_data=[0.5, -2.0])
    np.testing.assert_array_equal(datum_pixels(datum, "x"), [[[0.5, -2.0]]])
