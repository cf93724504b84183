"""Writing eStargz layers for the tests, after docs/estargz.md of
containerd/stargz-snapshotter (no eStargz tool is packaged here): each non-empty
regular file's data starts a gzip member (large ones are chunked, a member per
chunk), the TOC ``stargz.index.json`` is the last tar entry in its own member,
then the 51-byte footer whose gzip extra field holds the TOC's offset."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import tarfile
import time
import zlib

TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
_TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
          tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
          tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.gz = zlib.compressobj(6, zlib.DEFLATED, 31)

    def new_member(self) -> int:
        self.out += self.gz.flush()
        self.gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        return len(self.out)

    def write(self, data: bytes) -> None:
        self.out += self.gz.compress(data)


def footer(toc_offset: int) -> bytes:
    subfield = f"{toc_offset:016x}STARGZ".encode()
    extra = b"SG" + struct.pack("<H", len(subfield)) + subfield
    header = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", len(extra))
    return header + extra + b"\x01\x00\x00\xff\xff" + b"\0" * 8


def to_estargz(tar_bytes: bytes, chunk_size: int = 256 << 10) -> tuple[bytes, str, str]:
    """(blob, TOC digest, DiffID) of the eStargz form of an uncompressed layer tar."""
    writer = _Writer()
    entries = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as source:
        for member in source:
            writer.write(member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            entry = {"name": member.name, "type": _TYPES[member.type], "mode": member.mode,
                     "uid": member.uid, "gid": member.gid,
                     "modtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(member.mtime))}
            if member.linkname:
                entry["linkName"] = member.linkname
            if member.ischr() or member.isblk():
                entry.update(devMajor=member.devmajor, devMinor=member.devminor)
            xattrs = {k[len("SCHILY.xattr."):]: base64.b64encode(
                v.encode("utf-8", "surrogateescape")).decode()
                for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if xattrs:
                entry["xattrs"] = xattrs
            if not (member.isreg() and member.size):
                entries.append(entry)
                continue
            data = source.extractfile(member).read()
            entry.update(size=member.size, digest=_sha(data))
            pieces = [data[at:at + chunk_size] for at in range(0, len(data), chunk_size)]
            for number, piece in enumerate(pieces):
                offset = writer.new_member()
                last = number == len(pieces) - 1
                part = {"offset": offset, "chunkOffset": number * chunk_size,
                        "chunkSize": 0 if last else len(piece), "chunkDigest": _sha(piece)}
                entries.append({**entry, **part} if number == 0 else
                               {"name": member.name, "type": "chunk", **part})
                writer.write(piece)
            writer.write(b"\0" * (-member.size % 512))
    toc = json.dumps({"version": 1, "entries": entries}).encode()
    toc_offset = writer.new_member()
    info = tarfile.TarInfo("stargz.index.json")
    info.size = len(toc)
    info.mode = 0o644
    writer.write(info.tobuf(tarfile.USTAR_FORMAT) + toc + b"\0" * (-len(toc) % 512)
                 + b"\0" * 1024)
    writer.out += writer.gz.flush()
    blob = bytes(writer.out) + footer(toc_offset)
    return blob, _sha(toc), _sha(_gunzip(blob))


def _gunzip(blob: bytes) -> bytes:
    out = bytearray()
    data = blob
    while data:
        decoder = zlib.decompressobj(31)
        out += decoder.decompress(data)
        data = decoder.unused_data
    return bytes(out)
