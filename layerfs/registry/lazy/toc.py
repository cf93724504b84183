"""Tables of contents of lazily mountable layers: tar members and where their data is.

Each reader returns a :class:`Toc`: the layer's entries as ``tarfile.TarInfo``
objects in tar order (what the unpacker's LayerWriter consumes) and, for each
regular file with data, a :class:`FileData` saying which byte range of the blob
holds it, how it is encoded, and its digest when the format has one.

- zstd:chunked: the TOC ("manifest") is a zstd frame at the position the layer
  descriptor's annotation gives, verified against the checksum annotation;
  each file's data is a run of zstd frames with the sha256 of its content.
- uncompressed tar: the tar headers, read through a seekable range reader
  (tarfile skips file data by seeking), each file's data is a plain range.
"""

from __future__ import annotations

import base64
import calendar
import io
import json
import re
import tarfile
from dataclasses import dataclass, field

from ...unpack.digests import parse_digest
from ...unpack.stream import GZIP_MAGIC, ZSTD_MAGIC
from ..client import RegistryClient, digest_of
from ..errors import RegistryError
from ..resolve import RemoteLayer

ZSTD_CHUNKED_PREFIXES = ("io.github.containers.zstd-chunked.", "io.containers.zstd-chunked.")
TAR_MEDIA_TYPES = frozenset({"application/vnd.oci.image.layer.v1.tar",
                             "application/vnd.docker.image.rootfs.diff.tar"})
MAX_TOC = 256 << 20
RANGE_BLOCK = 256 << 10
_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
_TOC_TYPES = {"reg": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
              "fifo": tarfile.FIFOTYPE}


@dataclass(frozen=True)
class FileData:
    """Where a regular file's data is in the blob: bytes [start, end) in ``encoding``."""
    start: int
    end: int
    size: int
    encoding: str
    """"plain" (the range is the data) or "zstd" (the range is zstd frames of it)."""
    digest: str = ""
    """sha256 of the data, when the format records it."""

    def to_json(self) -> list:
        return [self.start, self.end, self.size, self.encoding, self.digest]

    @classmethod
    def from_json(cls, value: list) -> "FileData":
        start, end, size, encoding, digest = value
        return cls(int(start), int(end), int(size), str(encoding), str(digest))


@dataclass
class Toc:
    kind: str
    entries: list[tuple[tarfile.TarInfo, FileData | None]] = field(default_factory=list)
    """In tar order: each member and, for a regular file with data, where the data is."""


def lazy_kind(layer: RemoteLayer) -> str | None:
    """How a layer can be mounted lazily: "zstd:chunked", "tar", or None (pull it whole)."""
    if _zstd_chunked_annotation(layer, "manifest-position"):
        return "zstd:chunked"
    if layer.media_type in TAR_MEDIA_TYPES:
        return "tar"
    return None


def read_toc(client: RegistryClient, layer: RemoteLayer, what: str) -> Toc | None:
    """The layer's table of contents, or None when the layer turns out not to allow it."""
    kind = lazy_kind(layer)
    if kind == "zstd:chunked":
        return _zstd_chunked_toc(client, layer, what)
    if kind == "tar":
        return _tar_toc(client, layer, what)
    return None


# -- zstd:chunked ------------------------------------------------------------------------

def _zstd_chunked_annotation(layer: RemoteLayer, key: str) -> str | None:
    for prefix in ZSTD_CHUNKED_PREFIXES:
        value = layer.annotations.get(prefix + key)
        if value:
            return str(value)
    return None


def _zstd_chunked_toc(client: RegistryClient, layer: RemoteLayer, what: str) -> Toc:
    import zstandard

    position = _zstd_chunked_annotation(layer, "manifest-position") or ""
    checksum = _zstd_chunked_annotation(layer, "manifest-checksum") or ""
    try:
        offset, length, uncompressed, toc_type = (int(x) for x in position.split(":")[:4])
    except ValueError:
        raise RegistryError(f"{what}: bad zstd:chunked manifest position '{position}'") from None
    if toc_type != 1 or length <= 0 or uncompressed > MAX_TOC or offset + length > layer.size:
        raise RegistryError(f"{what}: unsupported zstd:chunked manifest ({position})")
    algorithm, _ = parse_digest(checksum, f"{what}: zstd:chunked manifest checksum")
    with client.open_blob(layer.digest, offset, offset + length - 1, what=what) as response:
        compressed = response.read_all(length)
    if digest_of(compressed, algorithm) != checksum:
        raise RegistryError(f"{what}: zstd:chunked manifest digest mismatch: the descriptor "
                            f"says {checksum}, the registry sent {digest_of(compressed, algorithm)}")
    try:
        document = json.loads(zstandard.ZstdDecompressor().decompress(
            compressed, max_output_size=max(uncompressed, 1)))
    except (zstandard.ZstdError, ValueError) as exc:
        raise RegistryError(f"{what}: unreadable zstd:chunked manifest ({exc})") from None
    toc = Toc("zstd:chunked")
    for entry in document.get("entries") or []:
        if not isinstance(entry, dict) or entry.get("type") == "chunk":
            continue
        member = tarinfo_of(entry, what)
        data = None
        if member.isreg() and member.size:
            start, end = int(entry.get("offset") or 0), int(entry.get("endOffset") or 0)
            if not 0 <= start < end <= layer.size:
                raise RegistryError(f"{what}: entry '{member.name}' has no valid data range")
            data = FileData(start, end, member.size, "zstd", str(entry.get("digest") or ""))
        toc.entries.append((member, data))
    return toc


def tarinfo_of(entry: dict, what: str) -> tarfile.TarInfo:
    """A TOC entry (CRFS/zstd:chunked JSON) as the tar member it describes."""
    kind = _TOC_TYPES.get(str(entry.get("type")))
    if kind is None:
        raise RegistryError(f"{what}: TOC entry '{entry.get('name')}' has unknown type "
                            f"'{entry.get('type')}'")
    member = tarfile.TarInfo(str(entry.get("name") or ""))
    member.type = kind
    member.mode = int(entry.get("mode") or 0) & 0o7777
    member.uid = int(entry.get("uid") or 0)
    member.gid = int(entry.get("gid") or 0)
    member.size = int(entry.get("size") or 0) if kind == tarfile.REGTYPE else 0
    member.mtime = _timestamp(str(entry.get("modtime") or ""))
    member.linkname = str(entry.get("linkName") or "")
    member.devmajor = int(entry.get("devMajor") or 0)
    member.devminor = int(entry.get("devMinor") or 0)
    xattrs = entry.get("xattrs") if isinstance(entry.get("xattrs"), dict) else {}
    member.pax_headers = {f"SCHILY.xattr.{name}": base64.b64decode(value).decode(
        "utf-8", "surrogateescape") for name, value in xattrs.items()}
    return member


def _timestamp(text: str) -> float:
    match = _RFC3339.match(text)
    if not match:
        return 0.0
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if year < 1902:
        return 0.0  # Go's zero time and the like
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    zone = match.group(8)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = float(match.group(7)) if match.group(7) else 0.0
    return seconds + fraction


# -- uncompressed tar ----------------------------------------------------------------------

class RangeReader(io.RawIOBase):
    """A seekable read-only view of a blob, fetched in blocks by range requests."""

    def __init__(self, client: RegistryClient, digest: str, size: int, what: str,
                 block: int = RANGE_BLOCK) -> None:
        super().__init__()
        self.client = client
        self.digest = digest
        self.size = size
        self.what = what
        self.block = block
        self.position = 0
        self.requests = 0
        self._cache: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.position >= self.size:
            return 0
        index = self.position // self.block
        data = self._block(index)
        start = self.position - index * self.block
        count = min(len(buffer), len(data) - start)
        buffer[:count] = data[start:start + count]
        self.position += count
        return count

    def _block(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is None:
            start = index * self.block
            end = min(start + self.block, self.size) - 1
            with self.client.open_blob(self.digest, start, end, what=self.what) as response:
                if response.status != 206 and start:
                    raise RegistryError(f"{self.what}: the registry does not serve ranges")
                data = response.read_all(self.block if response.status == 206 else self.size)
            if response.status == 200:
                data = data[start:end + 1]
            self.requests += 1
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = data
        return data


def _tar_toc(client: RegistryClient, layer: RemoteLayer, what: str) -> Toc | None:
    reader = RangeReader(client, layer.digest, layer.size, what)
    head = reader.read(4)
    reader.seek(0)
    if head.startswith(GZIP_MAGIC) or head.startswith(ZSTD_MAGIC):
        return None  # a compressed blob under a plain tar media type: pull it whole
    toc = Toc("tar")
    try:
        with tarfile.open(fileobj=reader, mode="r:", errors="surrogateescape",  # type: ignore[call-overload]
                          encoding="utf-8") as tar:
            for member in tar:
                if member.issparse():
                    return None  # GNU sparse data is not one range: pull it whole
                data = None
                if member.isreg() and member.size:
                    data = FileData(member.offset_data, member.offset_data + member.size,
                                    member.size, "plain")
                toc.entries.append((member, data))
    except tarfile.TarError as exc:
        raise RegistryError(f"{what}: not a valid tar archive ({exc})") from None
    return toc
