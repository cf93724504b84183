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


def _put_blob(layout, data: bytes) -> str:
    import hashlib
    hex_digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / hex_digest).write_bytes(data)
    return "sha256:" + hex_digest


def image_config(tars: list[bytes], *, arch: str = "amd64", history: list[dict] | None = None
                 ) -> bytes:
    import hashlib
    import json
    config = {"architecture": arch, "os": "linux",
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
              "history": history or [{"created_by": f"layer {i}"} for i in range(len(tars))]}
    return json.dumps(config).encode()


def write_oci_manifest(layout, tars: list[bytes], *, compress=gzipped, arch: str = "amd64"
                       ) -> dict:
    """Blobs, config and manifest of one image in ``layout``; returns its descriptor."""
    import json
    blobs = [compress(t) for t in tars]
    config = image_config(tars, arch=arch)
    config_digest = _put_blob(layout, config)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": _put_blob(layout, b), "size": len(b)} for b in blobs]}
    data = json.dumps(manifest).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _put_blob(layout, data), "size": len(data),
            "platform": {"os": "linux", "architecture": arch}}


def write_oci_layout(layout, images: dict[str, list[bytes]]) -> None:
    """An OCI layout with one tagged image per entry of ``images`` (tag -> layer tars)."""
    import json
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifests = []
    for tag, tars in images.items():
        descriptor = write_oci_manifest(layout, tars)
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(descriptor)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def write_multiarch_layout(layout, per_arch: dict[str, list[bytes]], tag: str = "latest") -> None:
    """An OCI layout whose index.json points at a nested index of per-platform manifests."""
    import json
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries = [write_oci_manifest(layout, tars, arch=arch) for arch, tars in per_arch.items()]
    nested = json.dumps({"schemaVersion": 2,
                         "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": entries}).encode()
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json",
                  "digest": _put_blob(layout, nested), "size": len(nested),
                  "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                   "manifests": [descriptor]}))
