"""Tar bytes that tarfile would not write: headers crafted field by field.

Enough of ustar, PAX and GNU to build hostile layers: any name bytes, any
size field, sparse entries in the old GNU form and PAX 1.0, chains of
extended headers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    """A numeric field: octal, or GNU base-256 when octal does not fit."""
    if value >= 8 ** (width - 1):
        return _base256(value, width)
    return (b"%0*o" % (width - 1, value)) + b"\0"


def header(name: bytes, *, size: int = 0, kind: bytes = b"0", linkname: bytes = b"",
           mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000,
           devmajor: int = 0, devminor: int = 0, gnu: bool = False,
           tail: bytes = b"") -> bytes:
    """One 512-byte header; ``tail`` fills bytes 345.. (GNU sparse data, ustar prefix)."""
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[345:345 + len(tail)] = tail
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _base256(value: int, width: int) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes, data: bytes = b"", **fields) -> bytes:
    return header(name, size=len(data), **fields) + padded(data)


def pax_records(records: dict[bytes, bytes]) -> bytes:
    out = b""
    for key, value in records.items():
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def pax(records: dict[bytes, bytes], kind: bytes = b"x") -> bytes:
    data = pax_records(records)
    return header(b"PaxHeader", size=len(data), kind=kind) + padded(data)


def end() -> bytes:
    return bytes(2 * BLOCK)


def sparse_pax_1_0(name: bytes, real_size: int, chunks: list[tuple[int, bytes]]) -> bytes:
    """A GNU PAX 1.0 sparse file: the map as decimal lines before the data."""
    mapping = b"%d\n" % len(chunks) + b"".join(b"%d\n%d\n" % (offset, len(data))
                                               for offset, data in chunks)
    data = padded(mapping) + b"".join(data for _, data in chunks)
    records = {b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0",
               b"GNU.sparse.name": name, b"GNU.sparse.realsize": b"%d" % real_size}
    return pax(records) + member(b"GNUSparseFile.0/" + name[-80:], data)


def sparse_old_gnu(name: bytes, real_size: int, chunks: list[tuple[int, bytes]],
                   extension_blocks: int = 0) -> bytes:
    """A type 'S' sparse file with up to 4 map entries in the header (and empty
    extension blocks, each announcing the next)."""
    tail = bytearray(BLOCK - 345)
    for index, (offset, data) in enumerate(chunks[:4]):
        start = 386 - 345 + index * 24
        tail[start:start + 12] = _octal(offset, 12)
        tail[start + 12:start + 24] = _octal(len(data), 12)
    tail[482 - 345] = 1 if extension_blocks else 0
    tail[483 - 345:495 - 345] = _octal(real_size, 12)
    stored = b"".join(data for _, data in chunks)
    out = header(name, size=len(stored), kind=b"S", gnu=True, tail=bytes(tail))
    for number in range(extension_blocks):
        block = bytearray(BLOCK)
        block[504] = 1 if number + 1 < extension_blocks else 0
        out += bytes(block)
    return out + padded(stored)


def put_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def oci_layout(layout: Path, blobs: list[bytes], diff_ids: list[str] | None = None,
               **manifest_extra) -> dict:
    """An OCI layout of one image whose layer blobs are given as stored (any compression).

    DiffIDs default to the sha256 of each blob (right for plain tars)."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    diff_ids = diff_ids or ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_digest = put_blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": 0},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": put_blob(layout, b), "size": len(b)} for b in blobs],
                **manifest_extra}
    manifest_bytes = json.dumps(manifest).encode()
    descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": put_blob(layout, manifest_bytes), "size": len(manifest_bytes),
                  "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                   "manifests": [descriptor]}))
    return {"config": config, "manifest": manifest, "descriptor": descriptor}
