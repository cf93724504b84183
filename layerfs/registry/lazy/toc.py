"""Tables of contents of lazily mountable layers: tar members and where their data is.

Each reader returns a :class:`Toc`: the layer's entries as ``tarfile.TarInfo``
objects in tar order (what the unpacker's LayerWriter consumes) and, for each
regular file with data, a :class:`FileData` saying which byte range of the blob
holds it, how it is encoded, and its digest when the format has one.

- zstd:chunked: the TOC ("manifest") is a zstd frame at the position the layer
  descriptor's annotation gives, verified against the checksum annotation;
  each file's data is a run of zstd frames with the sha256 of its content.
- eStargz: the TOC is the last tar entry in its own gzip member, found by the
  footer, verified against the ``toc.digest`` annotation; each file's data is
  one or more gzip members (chunks), each with its sha256.
- uncompressed tar: the tar headers, read through a seekable range reader
  (tarfile skips file data by seeking), each file's data is a plain range.
"""

from __future__ import annotations

import base64
import bisect
import calendar
import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field

from ...unpack.digests import parse_digest
from ...unpack.stream import GZIP_MAGIC, ZSTD_MAGIC
from ..client import RegistryClient, digest_of
from ..errors import RegistryError
from ..resolve import RemoteLayer

ZSTD_CHUNKED_PREFIXES = ("io.github.containers.zstd-chunked.", "io.containers.zstd-chunked.")
TAR_MEDIA_TYPES = frozenset({"application/vnd.oci.image.layer.v1.tar",
                             "application/vnd.docker.image.rootfs.diff.tar"})
ESTARGZ_TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
ESTARGZ_TOC_NAME = "stargz.index.json"
ESTARGZ_FOOTER = 51
MAX_TOC = 256 << 20
RANGE_BLOCK = 64 << 10
MAX_READ_AHEAD = 4 << 20
_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
_TOC_TYPES = {"reg": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
              "fifo": tarfile.FIFOTYPE}


@dataclass(frozen=True)
class Part:
    """One piece of a file's data: blob bytes [start, end), decoded, then ``skip``
    bytes dropped and ``size`` bytes taken."""
    start: int
    end: int
    size: int
    skip: int = 0
    digest: str = ""
    """sha256 of this piece, when the format records it (eStargz chunks)."""


@dataclass(frozen=True)
class FileData:
    """Where a regular file's data is in the blob."""
    size: int
    encoding: str
    """How each part's range is encoded: "plain", "gzip" or "zstd"."""
    parts: tuple[Part, ...]
    digest: str = ""
    """sha256 of the whole data, when the format records it."""

    @classmethod
    def single(cls, start: int, end: int, size: int, encoding: str,
               digest: str = "") -> "FileData":
        return cls(size, encoding, (Part(start, end, size),), digest)

    def to_json(self) -> list:
        return [self.size, self.encoding, self.digest,
                [[p.start, p.end, p.size, p.skip, p.digest] for p in self.parts]]

    @classmethod
    def from_json(cls, value: list) -> "FileData":
        size, encoding, digest, parts = value
        return cls(int(size), str(encoding),
                   tuple(Part(int(a), int(b), int(c), int(d), str(e)) for a, b, c, d, e in parts),
                   str(digest))


@dataclass
class Toc:
    kind: str
    entries: list[tuple[tarfile.TarInfo, FileData | None]] = field(default_factory=list)
    """In tar order: each member and, for a regular file with data, where the data is."""


def lazy_kind(layer: RemoteLayer) -> str | None:
    """How a layer can be mounted lazily: "zstd:chunked", "estargz", "tar", or None (pull
    it whole)."""
    if _zstd_chunked_annotation(layer, "manifest-position"):
        return "zstd:chunked"
    if layer.annotations.get(ESTARGZ_TOC_DIGEST) and layer.size > ESTARGZ_FOOTER:
        return "estargz"
    if layer.media_type in TAR_MEDIA_TYPES:
        return "tar"
    return None


def read_toc(client: RegistryClient, layer: RemoteLayer, what: str) -> Toc | None:
    """The layer's table of contents, or None when the layer turns out not to allow it."""
    kind = lazy_kind(layer)
    if kind == "zstd:chunked":
        return _zstd_chunked_toc(client, layer, what)
    if kind == "estargz":
        return _estargz_toc(client, layer, what)
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
            data = FileData.single(start, end, member.size, "zstd",
                                   str(entry.get("digest") or ""))
        toc.entries.append((member, data))
    return toc


# -- eStargz --------------------------------------------------------------------------------

def _estargz_toc(client: RegistryClient, layer: RemoteLayer, what: str) -> Toc | None:
    """eStargz (docs/estargz.md of containerd/stargz-snapshotter): a 51-byte gzip footer
    whose extra field holds the TOC's offset; the TOC is the last tar entry,
    ``stargz.index.json``, in its own gzip member, its sha256 in the layer's annotation."""
    end = layer.size - ESTARGZ_FOOTER
    with client.open_blob(layer.digest, end, layer.size - 1, what=what) as response:
        footer = response.read_all(ESTARGZ_FOOTER)
    toc_offset = _estargz_toc_offset(footer)
    if toc_offset is None or not 0 <= toc_offset < end or end - toc_offset > MAX_TOC:
        return None  # not eStargz after all: pull it whole
    with client.open_blob(layer.digest, toc_offset, end - 1, what=what) as response:
        compressed = response.read_all(end - toc_offset)
    try:
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed, MAX_TOC + 4096)
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:", encoding="utf-8",
                          errors="surrogateescape") as tar:
            toc_member = tar.next()
            if toc_member is None or toc_member.name != ESTARGZ_TOC_NAME:
                raise RegistryError(f"{what}: the eStargz TOC entry is missing")
            toc_bytes = stream[toc_member.offset_data:toc_member.offset_data + toc_member.size]
    except (zlib.error, tarfile.TarError) as exc:
        raise RegistryError(f"{what}: unreadable eStargz TOC ({exc})") from None
    expected = str(layer.annotations[ESTARGZ_TOC_DIGEST])
    algorithm, _ = parse_digest(expected, f"{what}: eStargz TOC digest")
    if digest_of(toc_bytes, algorithm) != expected:
        raise RegistryError(f"{what}: eStargz TOC digest mismatch: the descriptor says "
                            f"{expected}, the TOC is {digest_of(toc_bytes, algorithm)}")
    try:
        document = json.loads(toc_bytes)
    except ValueError as exc:
        raise RegistryError(f"{what}: the eStargz TOC is not JSON ({exc})") from None
    entries = [e for e in document.get("entries") or [] if isinstance(e, dict)]
    offsets = sorted({int(e["offset"]) for e in entries if e.get("offset")} | {toc_offset})
    toc = Toc("estargz")
    current: list | None = None  # [member, size, digest, parts] of the file being chunked

    def finish() -> None:
        if current is not None:
            member, size, digest, parts = current
            toc.entries.append((member, FileData(size, "gzip", tuple(parts), digest)))

    for entry in entries:
        if entry.get("type") == "chunk":
            if current is None:
                raise RegistryError(f"{what}: eStargz chunk of '{entry.get('name')}' "
                                    "without its file")
            current[3].append(_estargz_part(entry, current[1], offsets, what))
            continue
        finish()
        current = None
        member = tarinfo_of(entry, what)
        if member.isreg() and member.size:
            current = [member, member.size, str(entry.get("digest") or ""),
                       [_estargz_part(entry, member.size, offsets, what)]]
        else:
            toc.entries.append((member, None))
    finish()
    # The TOC is a file of the layer too (a full pull shows it): serve it from its member.
    toc.entries.append((toc_member, FileData(
        toc_member.size, "gzip", (Part(toc_offset, end, toc_member.size,
                                       toc_member.offset_data),), expected)))
    return toc


def _estargz_toc_offset(footer: bytes) -> int | None:
    # gzip header (10) + XLEN (2) + 'S' 'G' + LEN (2) + "%016xSTARGZ" (22)
    if len(footer) != ESTARGZ_FOOTER or footer[:2] != b"\x1f\x8b" or not footer[3] & 0x04:
        return None
    subfield = footer[16:38]
    if footer[12:14] != b"SG" or not subfield.endswith(b"STARGZ"):
        return None
    try:
        return int(subfield[:16], 16)
    except ValueError:
        return None


def _estargz_part(entry: dict, file_size: int, offsets: list[int], what: str) -> Part:
    start = int(entry.get("offset") or 0)
    position = bisect.bisect_right(offsets, start)
    if not start or position >= len(offsets):
        raise RegistryError(f"{what}: eStargz entry '{entry.get('name')}' has no valid offset")
    chunk_offset = int(entry.get("chunkOffset") or 0)
    size = int(entry.get("chunkSize") or 0) or file_size - chunk_offset
    return Part(start, offsets[position], size, int(entry.get("innerOffset") or 0),
                str(entry.get("chunkDigest") or ""))


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
    """A seekable read-only view of a blob, fetched by range requests with read-ahead.

    Reading on where the last fetch ended (tar headers of small files, one after
    the other) doubles the read-ahead, up to ``MAX_READ_AHEAD``; a seek past it (over
    a large file's data) starts again from ``block``."""

    def __init__(self, client: RegistryClient, digest: str, size: int, what: str,
                 block: int = RANGE_BLOCK) -> None:
        super().__init__()
        self.client = client
        self.digest = digest
        self.size = size
        self.what = what
        self.block = block
        self.read_ahead = block
        self.position = 0
        self.requests = 0
        self._segments: list[tuple[int, bytes]] = []
        self._fetched_to = -1

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

    def read(self, size: int | None = -1) -> bytes:
        """Exactly ``size`` bytes unless the blob ends first (tarfile takes a short read
        for the end of the archive)."""
        if size is None or size < 0:
            size = self.size - self.position
        pieces = []
        while size > 0 and self.position < self.size:
            start, data = self._segment(self.position)
            piece = data[self.position - start:self.position - start + size]
            pieces.append(piece)
            self.position += len(piece)
            size -= len(piece)
        return b"".join(pieces)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _segment(self, position: int) -> tuple[int, bytes]:
        for start, data in self._segments:
            if start <= position < start + len(data):
                return start, data
        if self._fetched_to <= position < self._fetched_to + self.read_ahead:
            self.read_ahead = min(self.read_ahead * 2, MAX_READ_AHEAD)
        else:
            self.read_ahead = self.block
        end = min(position + self.read_ahead, self.size) - 1
        with self.client.open_blob(self.digest, position, end, what=self.what) as response:
            if response.status != 206:
                raise RegistryError(f"{self.what}: the registry does not serve ranges")
            data = response.read_all(end - position + 1)
        if not data:
            raise RegistryError(f"{self.what}: empty answer to a range request")
        self.requests += 1
        self._fetched_to = position + len(data)
        self._segments = [*self._segments[-3:], (position, data)]
        return position, data


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
                    data = FileData.single(member.offset_data,
                                           member.offset_data + member.size, member.size,
                                           "plain")
                toc.entries.append((member, data))
    except tarfile.TarError as exc:
        raise RegistryError(f"{what}: not a valid tar archive ({exc})") from None
    return toc
