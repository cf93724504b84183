"""Build layer tars in memory for tests: entries described briefly, written with tarfile (PAX)."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field

MTIME = 1_600_000_000


@dataclass
class Entry:
    name: str | bytes
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str | bytes = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)
    major: int = 0
    minor: int = 0


def f(name, data=b"", mode=0o644, **kw) -> Entry:
    return Entry(name, tarfile.REGTYPE, data, mode, **kw)


def d(name, mode=0o755, **kw) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=mode, **kw)


def sym(name, target, **kw) -> Entry:
    return Entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **kw)


def hard(name, target, **kw) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target, **kw)


def dev(name, kind=tarfile.CHRTYPE, major=1, minor=3, mode=0o666, **kw) -> Entry:
    return Entry(name, kind, mode=mode, major=major, minor=minor, **kw)


def fifo(name, mode=0o644, **kw) -> Entry:
    return Entry(name, tarfile.FIFOTYPE, mode=mode, **kw)


def _text(name: str | bytes) -> str:
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def layer_tar(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for entry in entries:
            info = tarfile.TarInfo(_text(entry.name))
            info.type = entry.kind
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = MTIME
            info.linkname = _text(entry.linkname)
            info.devmajor, info.devminor = entry.major, entry.minor
            info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                for k, v in entry.xattrs.items()}
            if entry.kind == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstded(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


def truncated(tar: bytes) -> bytes:
    """Like umoci <= 0.4.7 insert: no end-of-archive blocks and no final padding."""
    body = tar.rstrip(b"\0")
    return body
