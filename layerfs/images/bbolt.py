"""Reading bbolt database files (etcd-io/bbolt), read-only and defensively.

containerd keeps its image, content and snapshot metadata in bbolt files
(FORMATS.md section 7). The format, as bbolt's own source defines it
(little-endian on every platform containerd runs on):

- The file is a sequence of pages of ``page_size`` bytes. Every page starts
  with a 16-byte header: page id (u64), flags (u16: 0x01 branch, 0x02 leaf,
  0x04 meta, 0x10 freelist), element count (u16), overflow (u32: the page
  spans ``overflow + 1`` pages).
- Pages 0 and 1 are meta pages; after the header: magic ``0xED0CDAED``
  (u32), version 2 (u32), page size (u32), flags (u32), the root bucket
  (root page id u64, sequence u64), freelist page id, high-water page id
  and transaction id (u64 each), then an FNV-1a 64 checksum of the 56
  bytes before it. The valid meta with the highest transaction id is the
  database.
- A bucket is a B+tree. A branch page holds 16-byte elements (key offset
  u32, key size u32, child page id u64); a leaf page holds 16-byte elements
  (flags u32, offset u32, key size u32, value size u32). Offsets count from
  the element itself; the value follows the key. A leaf element with flag
  0x01 is a nested bucket whose value is a bucket header (root page id,
  sequence); root 0 means an inline bucket, whose leaf page follows the
  header inside the value.

Nothing here trusts the file: every offset is checked against the page
and the file, a page must name itself, a tree that revisits a page or
nests too deep is refused, and the bytes parsed are bounded by a multiple
of the file's size, so a corrupt,
truncated or hostile file ends in one :class:`~layerfs.errors.ImageError`
naming the file, never in a loop or a read outside the file.

The file is opened read-only and never locked: containerd holds an
exclusive ``flock`` on its databases while it runs, and a reader's lock
would either fail or delay containerd. Instead :func:`read_consistent`
re-reads the meta pages after reading: bbolt never overwrites the pages of
the newest transaction before a later transaction commits (which rewrites
a meta page), so unchanged meta pages mean everything read belongs to one
transaction; otherwise it reads again.
"""

from __future__ import annotations

import os
import stat
import struct
from typing import Callable, Iterator, TypeVar, Union

from ..errors import ImageError

MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01

PAGE_HEADER = struct.Struct("<QHHI")
META_FIELDS = struct.Struct("<IIIIQQQQQQ")
BRANCH_ELEMENT = struct.Struct("<IIQ")
LEAF_ELEMENT = struct.Struct("<IIII")
BUCKET_HEADER = struct.Struct("<QQ")
ELEMENT_SIZE = 16
_CHECKSUMMED = META_FIELDS.size - 8

MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 1 << 24
MAX_DEPTH = 64
"""No real B+tree is this deep (bbolt keeps at least 2 keys a page); nor are buckets nested this deep."""
_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3

T = TypeVar("T")
Value = Union[bytes, "Bucket"]


def fnv64a(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class BoltError(ImageError):
    """A bbolt file that cannot be read: missing, not bbolt, corrupt or truncated."""


class _Meta:
    def __init__(self, raw: bytes) -> None:
        (self.magic, self.version, self.page_size, self.flags, self.root, self.sequence,
         self.freelist, self.high_water, self.txid, self.checksum) = META_FIELDS.unpack_from(raw)
        self.raw = raw

    def problem(self) -> str | None:
        if self.magic != MAGIC:
            return "bad magic"
        if self.version != VERSION:
            return f"unsupported version {self.version}"
        if self.checksum != fnv64a(self.raw[:_CHECKSUMMED]):
            return "checksum mismatch"
        size = self.page_size
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE or size & (size - 1):
            return f"invalid page size {size}"
        return None


class BoltFile:
    """One read-only view of a bbolt file (the newest valid transaction)."""

    def __init__(self, path: str | os.PathLike, *, what: str = "bbolt database") -> None:
        self.path = os.fspath(path)
        self.what = what
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:
            raise BoltError(f"{self.path}: {what} is missing") from None
        except PermissionError:
            raise BoltError(f"{self.path}: permission denied (containerd's databases are "
                            "readable by root only)") from None
        except OSError as exc:
            raise BoltError(f"{self.path}: cannot open {what}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode):
                raise self.corrupt("not a regular file")
            self.size = info.st_size
            self._pages: dict[int, bytes] = {}
            self.meta = self._choose_meta()
            self.page_size = self.meta.page_size
            self.page_count = min(self.meta.high_water, self.size // self.page_size)
            self._budget = 8 * self.size + (1 << 20)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BoltFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def corrupt(self, reason: str) -> BoltError:
        return BoltError(f"{self.path}: corrupt {self.what} ({reason})")

    # -- raw reading --------------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.corrupt(f"reference to bytes {offset}..{offset + length} beyond the "
                               f"end of the file ({self.size} bytes)")
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as exc:
            raise BoltError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if len(data) != length:
            raise self.corrupt("the file shrank while being read")
        return data

    def _meta_at(self, offset: int) -> _Meta | None:
        start = offset + PAGE_HEADER.size
        if start + META_FIELDS.size > self.size:
            return None
        return _Meta(self._read(start, META_FIELDS.size))

    def _choose_meta(self) -> _Meta:
        if self.size < PAGE_HEADER.size + META_FIELDS.size:
            raise self.corrupt(f"only {self.size} bytes, too short to be bbolt")
        first = self._meta_at(0)
        assert first is not None
        page_size = first.page_size if first.problem() is None else None
        if page_size is None:  # as bbolt does: look for the second meta page at 1K, 2K, ... 16M
            for shift in range(15):
                meta = self._meta_at(1024 << shift)
                if meta is not None and meta.problem() is None:
                    page_size = meta.page_size
                    break
        if page_size is None:
            if first.magic != MAGIC:
                raise BoltError(f"{self.path}: not a bbolt database (no bbolt magic number)")
            raise self.corrupt(f"meta page: {first.problem()}")
        second = self._meta_at(page_size)
        valid = [m for m in (first, second) if m is not None and m.problem() is None
                 and m.page_size == page_size]
        if not valid:
            raise self.corrupt("no valid meta page")
        self._meta_raw = self._meta_pages(page_size)
        return max(valid, key=lambda m: m.txid)

    def _meta_pages(self, page_size: int) -> bytes:
        return b"".join(self._read(offset, META_FIELDS.size + PAGE_HEADER.size)
                        for offset in (0, page_size)
                        if offset + META_FIELDS.size + PAGE_HEADER.size <= self.size)

    def unchanged(self) -> bool:
        """Whether no transaction committed since this view was taken."""
        try:
            return self._meta_pages(self.page_size) == self._meta_raw
        except BoltError:
            return False

    def _spend(self, nbytes: int) -> None:
        """Count the bytes parsed: a sound walk parses each page about once, a file whose
        pages refer to each other in circles or fans would parse some forever."""
        self._budget -= nbytes
        if self._budget < 0:
            raise self.corrupt("its pages refer to each other in circles")

    def page(self, page_id: int) -> tuple[bytes, int, int]:
        """(bytes, flags, count) of a data page, checked to lie inside the file and name itself."""
        cached = self._pages.get(page_id)
        if cached is None:
            if 2 <= page_id < self.meta.high_water and page_id >= self.page_count:
                raise self.corrupt(f"truncated: page {page_id} of {self.meta.high_water} lies "
                                   f"beyond the end of the file ({self.size} bytes)")
            if not 2 <= page_id < self.page_count:
                raise self.corrupt(f"reference to page {page_id}, outside pages 2.."
                                   f"{self.page_count - 1}")
            head = self._read(page_id * self.page_size, PAGE_HEADER.size)
            own_id, _flags, _count, overflow = PAGE_HEADER.unpack(head)
            if own_id != page_id:
                raise self.corrupt(f"page {page_id} says it is page {own_id}")
            if page_id + overflow >= self.page_count:
                raise self.corrupt(f"page {page_id} overflows the file ({overflow} more pages)")
            cached = self._read(page_id * self.page_size, (overflow + 1) * self.page_size)
            self._pages[page_id] = cached
        self._spend(len(cached))
        _id, flags, count, _overflow = PAGE_HEADER.unpack_from(cached)
        return cached, flags, count

    # -- buckets ------------------------------------------------------------------------------

    def root(self) -> Bucket:
        return Bucket(self, self.meta.root, None, b"", 0)


class Bucket:
    """A bucket: keys to values (bytes) or nested buckets; keys in byte order."""

    def __init__(self, db: BoltFile, root: int, inline: bytes | None, name: bytes,
                 depth: int) -> None:
        if depth > MAX_DEPTH:
            raise db.corrupt("buckets nested too deeply")
        self.db = db
        self.root_page = root
        self.inline = inline
        self.name = name
        self.depth = depth

    def _label(self) -> str:
        return repr(self.name.decode("utf-8", "backslashreplace")) if self.name else "root"

    def _node(self, page_id: int | None) -> tuple[bytes, int, int]:
        if page_id is None:
            assert self.inline is not None
            if len(self.inline) < PAGE_HEADER.size:
                raise self.db.corrupt(f"inline bucket {self._label()} is truncated")
            self.db._spend(len(self.inline))
            _id, flags, count, _overflow = PAGE_HEADER.unpack_from(self.inline)
            if flags != LEAF:
                raise self.db.corrupt(f"inline bucket {self._label()} is not a leaf")
            return self.inline, flags, count
        data, flags, count = self.db.page(page_id)
        if flags not in (BRANCH, LEAF):
            raise self.db.corrupt(f"page {page_id} of bucket {self._label()} has type "
                                  f"{flags:#x}, not a branch or leaf")
        return data, flags, count

    def _span(self, data: bytes, start: int, length: int, page_id: int | None) -> bytes:
        if start + length > len(data):
            where = f"page {page_id}" if page_id is not None else f"inline bucket {self._label()}"
            raise self.db.corrupt(f"an element of {where} points past its end")
        return data[start:start + length]

    def _elements(self, data: bytes, count: int, page_id: int | None) -> None:
        if PAGE_HEADER.size + count * ELEMENT_SIZE > len(data):
            where = f"page {page_id}" if page_id is not None else f"inline bucket {self._label()}"
            raise self.db.corrupt(f"{where} claims {count} elements, more than fit")

    def _branch(self, data: bytes, count: int, page_id: int | None) -> list[tuple[bytes, int]]:
        self._elements(data, count, page_id)
        children = []
        for index in range(count):
            at = PAGE_HEADER.size + index * ELEMENT_SIZE
            pos, ksize, child = BRANCH_ELEMENT.unpack_from(data, at)
            children.append((self._span(data, at + pos, ksize, page_id), child))
        return children

    def _leaf(self, data: bytes, count: int, page_id: int | None) -> list[tuple[bytes, Value]]:
        self._elements(data, count, page_id)
        items: list[tuple[bytes, Value]] = []
        for index in range(count):
            at = PAGE_HEADER.size + index * ELEMENT_SIZE
            flags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(data, at)
            key = self._span(data, at + pos, ksize, page_id)
            value = self._span(data, at + pos + ksize, vsize, page_id)
            items.append((key, self._nested(key, value) if flags & BUCKET_LEAF_FLAG else value))
        return items

    def _nested(self, key: bytes, value: bytes) -> Bucket:
        if len(value) < BUCKET_HEADER.size:
            raise self.db.corrupt(f"bucket {key!r} has a truncated header")
        root, _sequence = BUCKET_HEADER.unpack_from(value)
        inline = value[BUCKET_HEADER.size:] if root == 0 else None
        return Bucket(self.db, root, inline, key, self.depth + 1)

    def items(self) -> Iterator[tuple[bytes, Value]]:
        """Every key with its value (bytes) or nested :class:`Bucket`, in order."""
        seen: set[int] = set()

        def walk(page_id: int | None, depth: int) -> Iterator[tuple[bytes, Value]]:
            if depth > MAX_DEPTH:
                raise self.db.corrupt(f"bucket {self._label()} is nested too deeply")
            if page_id is not None:
                if page_id in seen:
                    raise self.db.corrupt(f"page {page_id} is reached twice in bucket "
                                          f"{self._label()}")
                seen.add(page_id)
            data, flags, count = self._node(page_id)
            if flags == LEAF:
                yield from self._leaf(data, count, page_id)
                return
            for _key, child in self._branch(data, count, page_id):
                yield from walk(child, depth + 1)

        yield from walk(None if self.inline is not None else self.root_page, 0)

    def get(self, key: bytes) -> Value | None:
        """The value or nested bucket under ``key``; None when absent."""
        page_id: int | None = None if self.inline is not None else self.root_page
        for _ in range(MAX_DEPTH + 1):
            data, flags, count = self._node(page_id)
            if flags == LEAF:
                for found, value in self._leaf(data, count, page_id):
                    if found == key:
                        return value
                return None
            children = self._branch(data, count, page_id)
            if not children:
                return None
            chosen = children[0][1]
            for first_key, child in children:
                if first_key > key:
                    break
                chosen = child
            page_id = chosen
        raise self.db.corrupt(f"bucket {self._label()} is nested too deeply")

    def bucket(self, *path: bytes) -> Bucket | None:
        """The nested bucket at ``path`` (None if any step is absent or not a bucket)."""
        current: Value | None = self
        for name in path:
            if not isinstance(current, Bucket):
                return None
            current = current.get(name)
        return current if isinstance(current, Bucket) else None

    def value(self, key: bytes) -> bytes | None:
        found = self.get(key)
        return found if isinstance(found, bytes) else None

    def buckets(self) -> Iterator[tuple[bytes, Bucket]]:
        for key, value in self.items():
            if isinstance(value, Bucket):
                yield key, value


def read_consistent(path: str | os.PathLike, read: Callable[[BoltFile], T], *,
                    what: str = "bbolt database", attempts: int = 5) -> T:
    """``read(db)`` on one transaction of the file, even while its owner writes it."""
    for attempt in range(attempts):
        with BoltFile(path, what=what) as db:
            try:
                result = read(db)
            except BoltError:
                if db.unchanged() or attempt == attempts - 1:
                    raise
                continue
            if db.unchanged():
                return result
    raise BoltError(f"{os.fspath(path)}: {what} keeps changing while being read; "
                    "try again when its owner is idle")


def uvarint(data: bytes, what: str) -> int:
    """Go's ``binary.Uvarint``: how containerd stores sizes and snapshot ids."""
    value = shift = 0
    for index, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if index == 9 and byte > 1:
                break
            return value
        shift += 7
    raise ImageError(f"{what}: not a valid varint ({data[:10].hex()})")
