"""The bbolt reader on real containerd databases (tests/images/data/containerd, written by
containerd 1.6: see expected.json for how), checked against what `ctr` listed; and on
truncated, mutated and hostile copies of them: a clear BoltError naming the file, or a
sound read, never another exception, a hang or a read outside the file."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.errors import ImageError
from layerfs.images.bbolt import (
    BRANCH,
    META_FIELDS,
    PAGE_HEADER,
    BoltError,
    BoltFile,
    Bucket,
    fnv64a,
    read_consistent,
    uvarint,
)

DATA = Path(__file__).parent / "data" / "containerd"
EXPECTED = json.loads((DATA / "expected.json").read_text())
META_DB = gzip.decompress((DATA / "meta.db.gz").read_bytes())
SNAPSHOTTER_DB = gzip.decompress((DATA / "metadata.db.gz").read_bytes())
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def write(tmp_path: Path, data: bytes, name: str = "meta.db") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def walk(bucket: Bucket, sound: bool = True) -> dict:
    """A bucket as nested dicts, every key also looked up with get() (which finds the
    same when the file is sound; in a damaged one its keys may be out of order)."""
    tree: dict = {}
    for key, value in bucket.items():
        looked_up = bucket.get(key)
        if isinstance(value, Bucket):
            assert isinstance(looked_up, Bucket) or not sound
            tree[key] = walk(value, sound)
        else:
            assert looked_up == value or not sound
            tree[key] = value
    return tree


def images_of(tree: dict) -> dict[str, str]:
    images = tree[b"v1"][b"default"][b"images"]
    return {name.decode(): image[b"target"][b"digest"].decode() for name, image in images.items()}


def test_reads_what_containerd_wrote(tmp_path):
    with BoltFile(write(tmp_path, META_DB)) as db:
        tree = walk(db.root())
        page_kinds = {(struct.unpack_from("<H", page, 8)[0], len(page) > db.page_size)
                      for page in db._pages.values()}
    assert images_of(tree) == EXPECTED["images"]
    labels = tree[b"v1"][b"default"][b"images"][b"example.com/many/tag:t7"][b"labels"]
    assert labels[b"big"].decode() == EXPECTED["labels"]["example.com/many/tag:t7"]["big"]
    snapshots = tree[b"v1"][b"default"][b"snapshots"][b"overlayfs"]
    assert {key.decode(): entry.get(b"parent", b"").decode() for key, entry in snapshots.items()} \
        == {key: entry["parent"] for key, entry in EXPECTED["snapshots"].items()}
    # The fixture exercises branch pages (124 images), overflow pages (the 4090-byte
    # label) and inline buckets (every image's target).
    assert (BRANCH, False) in page_kinds
    assert any(overflowing for _kind, overflowing in page_kinds)


def test_snapshotter_database(tmp_path):
    with BoltFile(write(tmp_path, META_DB)) as meta:
        snapshots = meta.root().bucket(b"v1", b"default", b"snapshots", b"overlayfs")
        backend = {key.decode(): entry.value(b"name").decode()
                   for key, entry in snapshots.buckets()}
    with BoltFile(write(tmp_path, SNAPSHOTTER_DB, "metadata.db")) as db:
        entries = db.root().bucket(b"v1", b"snapshots")
        ids = set()
        for key, expected in EXPECTED["snapshots"].items():
            entry = entries.bucket(backend[key].encode())
            assert entry.value(b"kind") == b"\x03" and expected["kind"] == "Committed"
            ids.add(uvarint(entry.value(b"id"), "id"))
            parent = entry.value(b"parent")
            assert (parent.decode() if parent else "") == \
                (backend[expected["parent"]] if expected["parent"] else "")
    assert len(ids) == len(EXPECTED["snapshots"])


def test_absent_keys_and_missing_buckets(tmp_path):
    with BoltFile(write(tmp_path, META_DB)) as db:
        images = db.root().bucket(b"v1", b"default", b"images")
        for key in (b"", b"\x00", b"zzzz", b"example.com/many/tag:t1000", b"a" * 5000):
            assert images.get(key) is None
        assert db.root().bucket(b"v1", b"nope", b"images") is None
        assert db.root().bucket(b"v1", b"version") is None  # a value, not a bucket


@pytest.mark.parametrize("data,reason", [
    (b"", "too short"), (b"\0" * 8192, "not a bbolt database"),
    (os.urandom(20000), "not a bbolt database"), (b"hello world\n" * 1000, "not a bbolt"),
])
def test_not_bbolt(tmp_path, data, reason):
    path = write(tmp_path, data)
    with pytest.raises(BoltError, match=reason) as caught:
        BoltFile(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_and_not_a_file(tmp_path):
    with pytest.raises(BoltError, match="missing"):
        BoltFile(tmp_path / "absent.db")
    with pytest.raises(BoltError, match="not a regular file"):
        BoltFile(tmp_path)


def test_reading_neither_writes_nor_locks(tmp_path):
    """containerd holds an exclusive flock while it runs: reading must not need any lock."""
    path = write(tmp_path, META_DB)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns)
    holder = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert images_of(read_consistent(path, lambda db: walk(db.root()))) == EXPECTED["images"]
    finally:
        os.close(holder)
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns) == before


def _set_meta(data: bytearray, offset: int, **fields: int) -> None:
    names = ("magic", "version", "page_size", "flags", "root", "sequence", "freelist",
             "high_water", "txid", "checksum")
    values = dict(zip(names, META_FIELDS.unpack_from(data, offset + PAGE_HEADER.size),
                      strict=True))
    values.update(fields)
    packed = bytearray(META_FIELDS.pack(*values.values()))
    packed[-8:] = struct.pack("<Q", fnv64a(bytes(packed[:-8])))
    data[offset + PAGE_HEADER.size:offset + PAGE_HEADER.size + META_FIELDS.size] = packed


def _newest_meta_offset(data: bytes) -> int:
    txids = [META_FIELDS.unpack_from(data, offset + PAGE_HEADER.size)[8] for offset in (0, 4096)]
    return 0 if txids[0] > txids[1] else 4096


def test_read_consistent_reads_again_after_a_commit(tmp_path):
    path = write(tmp_path, META_DB)
    calls = []

    def read(db: BoltFile) -> int:
        calls.append(db.meta.txid)
        if len(calls) == 1:  # a "commit" while reading: the older meta page is rewritten
            data = bytearray(path.read_bytes())
            older = 4096 - _newest_meta_offset(data)
            _set_meta(data, older, txid=db.meta.txid + 1)
            path.write_bytes(data)
        return db.meta.txid

    assert read_consistent(path, read) == calls[0] + 1
    assert calls == [calls[0], calls[0] + 1]


def test_valid_meta_is_chosen_when_the_newest_is_torn(tmp_path):
    data = bytearray(META_DB)
    newest = _newest_meta_offset(data)
    with BoltFile(write(tmp_path, bytes(data))) as db:
        txid = db.meta.txid
    data[newest + PAGE_HEADER.size + 20] ^= 0xFF  # fails its checksum
    with BoltFile(write(tmp_path, bytes(data))) as db:
        assert db.meta.txid == txid - 1


def _branch_page(tmp_path: Path) -> int:
    """A branch page in use (pages freed by older transactions look alike)."""
    with BoltFile(write(tmp_path, META_DB, "probe.db")) as db:
        walk(db.root())
        return next(page_id for page_id, page in db._pages.items()
                    if PAGE_HEADER.unpack_from(page)[1] == BRANCH)


@pytest.mark.parametrize("target", ["self", "meta", "beyond"])
def test_hostile_branch_pointers(tmp_path, target):
    data = bytearray(META_DB)
    page_id = _branch_page(tmp_path)
    child = {"self": page_id, "meta": 1, "beyond": 10**12}[target]
    struct.pack_into("<Q", data, page_id * 4096 + PAGE_HEADER.size + 8, child)
    path = write(tmp_path, bytes(data))
    with pytest.raises(BoltError) as caught, BoltFile(path) as db:
        walk(db.root())
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("field,value", [("root", 0), ("root", 1), ("root", 2**63),
                                         ("page_size", 1 << 30),
                                         ("page_size", 1000), ("high_water", 3)])
def test_hostile_meta_with_a_valid_checksum(tmp_path, field, value):
    data = bytearray(META_DB)
    for offset in (0, 4096):
        _set_meta(data, offset, **{field: value})
    path = write(tmp_path, bytes(data))
    with pytest.raises(BoltError) as caught:
        with BoltFile(path) as db:
            walk(db.root())
    assert str(path) in str(caught.value)


def test_high_water_mark_beyond_the_file_is_bounded_by_the_file(tmp_path):
    data = bytearray(META_DB)
    for offset in (0, 4096):
        _set_meta(data, offset, high_water=2**64 - 1)
    with BoltFile(write(tmp_path, bytes(data))) as db:
        assert db.page_count == len(META_DB) // 4096
        assert images_of(walk(db.root())) == EXPECTED["images"]


def _read_all(path: Path) -> None:
    """Everything a reader may do: a full walk and lookups; only BoltError may escape."""
    try:
        with BoltFile(path) as db:
            tree = walk(db.root(), sound=False)
            images = db.root().bucket(b"v1", b"default", b"images")
            if images is not None:
                images.get(b"example.com/many/tag:t50")
            assert isinstance(tree, dict)
    except BoltError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)


@FUZZ
@given(length=st.integers(min_value=0, max_value=169 * 4096 + 100))
def test_truncated(tmp_path, length):
    _read_all(write(tmp_path, META_DB[:length]))


def _live_pages(data: bytes) -> list[int]:
    """The pages a walk reads (the others are free pages of older transactions)."""
    with tempfile.NamedTemporaryFile() as copy:
        copy.write(data)
        copy.flush()
        with BoltFile(copy.name) as db:
            walk(db.root())
            return sorted(db._pages)


LIVE = {"meta": _live_pages(META_DB), "snapshotter": _live_pages(SNAPSHOTTER_DB)}
SOURCES = {"meta": META_DB, "snapshotter": SNAPSHOTTER_DB}


@FUZZ
@given(source=st.sampled_from(sorted(SOURCES)), data=st.data(), fix_checksums=st.booleans())
def test_mutated(tmp_path, source, data, fix_checksums):
    """Bytes of the pages in use replaced: headers, element offsets and sizes, keys."""
    image = bytearray(SOURCES[source])
    edit = st.tuples(st.sampled_from(LIVE[source] + [0, 1]),
                     st.one_of(st.integers(0, 63), st.integers(0, 4095)),
                     st.sampled_from([0, 1, 2, 0x10, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
    for page, offset, value in data.draw(st.lists(edit, min_size=1, max_size=8)):
        image[page * 4096 + offset] = value
    if fix_checksums:  # hostile, not merely damaged: the meta pages still check out
        for offset in (0, 4096):
            _set_meta(image, offset)
    _read_all(write(tmp_path, bytes(image)))


def test_error_is_an_image_error(tmp_path):
    assert issubclass(BoltError, ImageError)
