"""LMDB databases of Datums: a read-only reader and a batched, self-growing writer.

Readers open with ``readonly=True, lock=False`` so they never modify a
database (Caffe's golden LMDBs are even on a read-only file system) and keep
every key in one compact buffer for random access by index, which lets a data
layer seek to any batch (resume, partitions, shuffling).

Writers commit every ``batch`` records, as convert_imageset does.  When LMDB
reports MDB_MAP_FULL, the writer doubles the map size and commits the batch
again, so nobody has to guess a map size.  While a conversion runs, a marker
file in the database directory records how many records are committed; a
finished conversion removes it.  If the process dies, the database holds a
valid prefix and the marker tells the next reader or writer so.
"""
import os
import struct

import lmdb
import numpy as np

from ..errors import CaffeError, OutputError
from ..proto_io import make_directory, write_atomically

INCOMPLETE_MARKER = "CONVERSION_INCOMPLETE"
INITIAL_MAP_SIZE = 1 << 26


def interrupted_conversion_note(path):
    """A sentence about an interrupted conversion at ``path``, or None if there was none."""
    marker = os.path.join(os.fspath(path), INCOMPLETE_MARKER)
    if not os.path.isfile(marker):
        return None
    with open(marker, encoding="utf-8") as handle:
        committed = handle.read().strip() or "0"
    return (f"{path} is what an interrupted conversion left: a valid database of the "
            f"{committed} records committed before it stopped")


def _check_is_lmdb(source):
    if not os.path.exists(source):
        raise CaffeError(f"data source '{source}' does not exist")
    if os.path.isdir(source) and not os.path.exists(os.path.join(source, "data.mdb")):
        if os.path.exists(os.path.join(source, "CURRENT")):
            raise CaffeError(f"data source '{source}' is a LevelDB: not supported, convert "
                             f"it with convert_imageset --backend lmdb")
        raise CaffeError(f"data source '{source}' is not an LMDB (no data.mdb in it)")


_META = struct.Struct("<IIQQI")            # magic, version, address, map size, page size
_META_TAIL = struct.Struct("<QQQ")         # main tree's root page, last page, txn id
_META_OFFSET, _META_TAIL_OFFSET = 16, 128  # after the page header; after the trees' counts
LMDB_MAGIC, LMDB_VERSION = 0xBEEFC0DE, 1
_NO_PAGE = (1 << 64) - 1


def check_lmdb_file(source):
    """Refuse a data file cut short or with garbage meta pages, before LMDB maps it.

    LMDB trusts its two meta pages: reading a page past the end of a truncated
    file kills the process with SIGBUS.  The newer meta page records the last
    page in use and the root of the main tree; the file must hold both.
    """
    path = os.path.join(source, "data.mdb") if os.path.isdir(source) else source
    try:
        with open(path, "rb") as handle:
            head = handle.read(_META_OFFSET + _META.size)
            size = os.fstat(handle.fileno()).st_size
            metas = [_read_meta(handle, head, page) for page in (0, 1)]
    except OSError as exc:
        raise CaffeError(f"data source '{source}': cannot read {path}: {exc.strerror}") \
            from None
    damaged = f"data source '{source}': {path} is damaged"
    advice = "copy the database again from its origin, or convert it again"
    if None in metas:
        raise CaffeError(f"{damaged}: its meta pages are not LMDB's ({size} bytes); {advice}")
    page_size, root, last_page = max(metas, key=lambda meta: meta[3])[:3]
    needed = (last_page + 1) * page_size
    if size < needed:
        raise CaffeError(f"{damaged}: it is {size} bytes, but its meta page records "
                         f"{needed} bytes ({last_page + 1} pages of {page_size}); the file "
                         f"was cut short (an unfinished copy?); {advice}")
    if root != _NO_PAGE and root > last_page:
        raise CaffeError(f"{damaged}: its meta page names root page {root} beyond the "
                         f"last page {last_page}; {advice}")


def _read_meta(handle, head, page):
    """(page size, root page, last page, txn id) of meta page ``page``, or None if garbage."""
    if len(head) < _META_OFFSET + _META.size:
        return None
    page_size = _META.unpack_from(head, _META_OFFSET)[4]
    if page_size < 512 or page_size & (page_size - 1) or page_size > 1 << 16:
        return None
    handle.seek(page * page_size)
    data = handle.read(_META_TAIL_OFFSET + _META_TAIL.size)
    if len(data) < _META_TAIL_OFFSET + _META_TAIL.size:
        return None
    magic, version = _META.unpack_from(data, _META_OFFSET)[:2]
    if magic != LMDB_MAGIC or version != LMDB_VERSION:
        return None
    return (page_size,) + _META_TAIL.unpack_from(data, _META_TAIL_OFFSET)


# python-lmdb allows one open Environment per database and process, but two
# nets may read one database (MCT's two models test on the same test set):
# readers of one path share one Environment, closed with its last reader.
_SHARED_ENVS = {}


def _open_shared(source):
    key = os.path.realpath(source)
    entry = _SHARED_ENVS.get(key)
    if entry is None:
        env = lmdb.open(source, readonly=True, lock=False, readahead=False,
                        subdir=os.path.isdir(source))
        entry = _SHARED_ENVS[key] = [env, 0]
    entry[1] += 1
    return entry[0]


def _close_shared(source):
    key = os.path.realpath(source)
    entry = _SHARED_ENVS.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _SHARED_ENVS[key]
        entry[0].close()


class LMDBReader:
    """Read-only, random access by index to the records of an LMDB."""

    def __init__(self, source):
        self.source = os.fspath(source)
        _check_is_lmdb(self.source)
        check_lmdb_file(self.source)
        try:
            self.env = _open_shared(self.source)
        except lmdb.Error as exc:
            raise CaffeError(f"data source '{self.source}' is not a readable LMDB: "
                             f"{exc}") from None
        self._index_keys()
        if not len(self):
            self.close()
            raise CaffeError(f"data source '{self.source}' holds no records")
        self.note = interrupted_conversion_note(self.source)

    def __getstate__(self):
        """A copy for a worker process: without the environment, which must not cross
        processes (``reopen_in_worker`` opens the worker's own)."""
        return {**self.__dict__, "env": None}

    def reopen_in_worker(self):
        """In a worker process, open its own environment (the pickled copy has none)."""
        self.env = lmdb.open(self.source, readonly=True, lock=False, readahead=False,
                             subdir=os.path.isdir(self.source))

    def _index_keys(self):
        with self.env.begin() as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        self._key_bytes = b"".join(keys)
        self._key_ends = np.cumsum([len(k) for k in keys], dtype=np.int64)

    def __len__(self):
        return len(self._key_ends)

    def key(self, index):
        start = int(self._key_ends[index - 1]) if index else 0
        return self._key_bytes[start:int(self._key_ends[index])]

    def where(self, index):
        """'source, key K' for messages about record ``index``."""
        return f"data source '{self.source}', key {self.key(index).decode('utf-8', 'replace')}"

    def transaction(self):
        """A read transaction; use one per thread, as LMDB requires."""
        return self.env.begin(buffers=False)

    def read(self, txn, index):
        value = txn.get(self.key(index))
        if value is None:
            raise CaffeError(f"{self.where(index)}: record vanished while reading")
        return value

    def items(self):
        """(key, value) pairs in key order."""
        with self.transaction() as txn:
            yield from txn.cursor()

    def close(self):
        if self.env is not None:
            _close_shared(self.source)
            self.env = None


class LMDBWriter:
    """Create a new LMDB and put records into it in committed batches.

    Use as a context manager: leaving the block normally commits the last batch
    and marks the database complete; an exception commits what is pending and
    leaves the marker behind.
    """

    def __init__(self, path, batch=1000, map_size=INITIAL_MAP_SIZE):
        self.path = os.fspath(path)
        if os.path.exists(self.path):
            note = interrupted_conversion_note(self.path)
            raise CaffeError((note + "; delete it to convert again") if note else
                             f"{self.path} already exists; choose a new name or delete it")
        make_directory(self.path)
        self.batch = batch
        self.committed = 0
        self._pending = []
        self._write_marker()
        self.env = lmdb.open(self.path, map_size=map_size, subdir=True)

    def _write_marker(self):
        write_atomically(os.path.join(self.path, INCOMPLETE_MARKER), f"{self.committed}\n")

    def put(self, key, value):
        self._pending.append((key, value))
        if len(self._pending) >= self.batch:
            self.commit()

    def commit(self):
        """Write the pending records in one transaction, growing the map until they fit."""
        if not self._pending:
            return
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                self._pending = []         # not retried when the writer closes
                raise OutputError(f"{self.path}: cannot write records: {exc}; the "
                                  f"{self.committed} records committed before are "
                                  f"kept") from None
        self.committed += len(self._pending)
        self._pending = []
        self._write_marker()

    def close(self, complete=True):
        try:
            self.commit()
            self.env.sync()
        finally:
            self.env.close()
        if complete:
            os.unlink(os.path.join(self.path, INCOMPLETE_MARKER))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(complete=exc_type is None)
        return False
