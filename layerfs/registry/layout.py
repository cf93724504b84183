"""Writing what a pull fetched as an OCI image layout (``layerfs pull -o DIR``).

The layout gets the image's manifest (byte for byte, so its digest holds),
config and layer blobs under ``blobs/<alg>/<hex>``, and an ``index.json``
entry naming the manifest by the reference's tag
(``org.opencontainers.image.ref.name``), replacing an older entry of that tag.
An existing layout is added to; blobs already there are verified, not fetched
again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from ..errors import UsageError
from ..unpack.digests import parse_digest
from .client import OCI_INDEX, Manifest
from .errors import RegistryError

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"


class LayoutWriter:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        marker = self.path / "oci-layout"
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"-o {self.path}: exists and is not a directory")
        if self.path.is_dir() and any(self.path.iterdir()) and not marker.is_file():
            raise UsageError(f"-o {self.path}: a non-empty directory that is not an OCI layout")
        (self.path / "blobs").mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            _write_atomic(marker, json.dumps(LAYOUT_VERSION).encode())

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = parse_digest(digest, "blob")
        return self.path / "blobs" / algorithm / hex_digest

    def has_blob(self, digest: str, size: int) -> bool:
        """Whether the layout holds this blob, intact (size and digest checked)."""
        path = self.blob_path(digest)
        try:
            if path.stat().st_size != size:
                return False
        except FileNotFoundError:
            return False
        algorithm = parse_digest(digest)[0]
        hasher = hashlib.new(algorithm)
        with open(path, "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                hasher.update(chunk)
        return f"{algorithm}:{hasher.hexdigest()}" == digest

    def write_blob(self, digest: str, data: bytes) -> None:
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _write_atomic(path, data)

    def add_manifest(self, manifest: Manifest, tag: str | None) -> None:
        """Store the manifest blob and name it in index.json (under a lock)."""
        self.write_blob(manifest.digest, manifest.data)
        descriptor: dict = {"mediaType": manifest.media_type, "digest": manifest.digest,
                            "size": len(manifest.data)}
        if tag:
            descriptor["annotations"] = {REF_NAME: tag}
        lock_fd = os.open(self.path / "oci-layout", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            index_path = self.path / "index.json"
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            if index_path.exists():
                try:
                    index = json.loads(index_path.read_text())
                except ValueError as exc:
                    raise RegistryError(f"{index_path}: not valid JSON ({exc})") from None
            kept = []
            for entry in index.get("manifests") or []:
                name = (entry.get("annotations") or {}).get(REF_NAME)
                if tag and name == tag:
                    continue
                if not name and not tag and entry.get("digest") == manifest.digest:
                    continue
                kept.append(entry)
            index["manifests"] = kept + [descriptor]
            _write_atomic(index_path, json.dumps(index, indent=2).encode())
        finally:
            os.close(lock_fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
