"""An OCI image layout: read (``index.json`` -> images) and appended to (blobs, index entries).

image-spec image-layout.md: ``oci-layout``, ``index.json`` and the blobs under
``blobs/<alg>/<hex>``. The same class serves the readers (a directory or an
``oci-archive`` tar, through any :class:`Files`, e.g. ``images.files``), ``pull
-o`` (blobs and a tagged entry added to a layout, created if need be) and
``commit --into`` (a new image = a base image plus one layer). containerd's
content store names its blobs the same way, so :func:`read_blob` serves it too.

Writes never leave a half-written file under a real name: a blob is written
under a temporary name and renamed to its digest; ``index.json`` is replaced
atomically, under an exclusive lock on ``oci-layout`` so that concurrent
pulls into one layout do not drop each other's entries. An interrupted write
leaves the layout as it was (plus at most unreferenced blobs).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol

from ..errors import ImageError, UsageError
from ..unpack.digests import parse_digest
from .config import ImageConfig
from .mediatypes import (
    DOCKER_GZIP_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_GZIP_LAYER,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
)
from .model import Descriptor, Index
from .platform import host_platform
from .resolve import Document, Image, Resolved, follow, resolve

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class Files(Protocol):
    """Read access to an image's files by relative name (``layerfs.images.files``)."""

    where: str
    path: Path

    def exists(self, name: str) -> bool: ...
    def is_dir(self, name: str) -> bool: ...
    def read_bytes(self, name: str) -> bytes: ...
    def read_json(self, name: str, what: str = "") -> object: ...


def blob_name(digest: str, where: str) -> str:
    """The file of a blob in an OCI layout or a containerd content store."""
    algorithm, hex_digest = parse_digest(digest, f"{where}: descriptor")
    return f"blobs/{algorithm}/{hex_digest}"


def verify_blob(data: bytes, digest: str, what: str) -> None:
    """Content addressed means checked: a blob must hash to the digest naming it."""
    algorithm, expected = parse_digest(digest, what)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise ImageError(f"{what}: digest mismatch, the content is {algorithm}:{actual}")


def read_blob(files: Files, descriptor: Descriptor, what: str) -> Document:
    """The small blob (``what``: "manifest", "config") ``descriptor`` names, verified."""
    digest = descriptor.digest
    name = blob_name(digest, files.where)
    try:
        data = files.read_bytes(name)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ImageError(f"{files.where}: {what} blob {digest} is missing ({name})") from None
    except OSError as exc:
        raise ImageError(f"{files.where}: {name}: {exc.strerror or exc}") from None
    verify_blob(data, digest, f"{files.where}: {what} blob {digest}")
    return Document(data, descriptor.media_type, digest, name)


class Layout:
    """An OCI layout read through ``files``; the writing methods need ``files`` to be a
    directory (``images.files.DirFiles``), and write beneath ``files.path``."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.path = Path(files.path)

    @staticmethod
    def is_layout(files: Files) -> bool:
        return files.exists("oci-layout") and files.is_dir("blobs")

    # -- reading ----------------------------------------------------------------------

    def index(self) -> Index:
        where = f"{self.files.where}: index.json"
        document = self.files.read_json("index.json", "index.json")
        if not isinstance(document, dict):
            raise ImageError(f"{where} is not a JSON object")
        return Index.decode(document, where)

    def images(self) -> list[Descriptor]:
        """The entries of index.json that lead to images."""
        return self.index().images()

    def tags(self) -> list[str]:
        return [entry.annotations.get(REF_NAME, "") for entry in self.index().manifests]

    def fetch(self, descriptor: Descriptor, what: str) -> Document:
        return read_blob(self.files, descriptor, what)

    def follow(self, descriptor: Descriptor, platform: str) -> Resolved:
        """The image manifest an index entry leads to, for ``platform``."""
        return follow(self.fetch(descriptor, "manifest"), self.fetch, platform, self.files.where)

    def resolve(self, descriptor: Descriptor, platform: str) -> Image:
        """The image (manifest and config) an index entry leads to, for ``platform``."""
        return resolve(self.fetch(descriptor, "manifest"), self.fetch, platform,
                       self.files.where)

    # -- writing ----------------------------------------------------------------------

    def create(self) -> None:
        """Make the directory a layout if it is not one yet (``oci-layout``, ``blobs/``)."""
        (self.path / "blobs").mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.is_file():
            _write_atomic(marker, json.dumps(LAYOUT_VERSION).encode())

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = parse_digest(digest, f"{self.path}: blob")
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

    def write_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (its digest given or sha256); returns the digest."""
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            temporary = self.new_blob_file(target.parent)
            Path(temporary).write_bytes(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        return digest

    def put_file(self, path: str, digest: str, *, move: bool) -> None:
        """Store the file ``path`` as blob ``digest`` (moved or copied)."""
        target = self.blob_path(digest)
        if target.exists():
            if move:
                os.unlink(path)
            return
        temporary = self.new_blob_file(target.parent)
        if move:
            os.replace(path, temporary)
        else:
            shutil.copyfile(path, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)

    def new_blob_file(self, directory: Path | None = None) -> str:
        """A path inside the layout to write a blob to before it is named by digest."""
        directory = directory or self.path / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        return str(directory / f".layerfs-{uuid.uuid4().hex}")

    def add_image(self, entry: Descriptor, tag: str | None) -> None:
        """Name ``entry`` in index.json, under ``tag`` when given: the tag moves to it from
        any entry that had it; an untagged entry replaces untagged ones of its digest."""
        if tag:
            entry = Descriptor.decode({**entry.to_json(), "annotations": {
                **entry.annotations, REF_NAME: tag}}, "new index entry")
        lock_fd = os.open(self.path / "oci-layout", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if (self.path / "index.json").exists():
                index = self.index()
                document = dict(index.raw)
                entries = index.manifests
            else:
                document = {"schemaVersion": 2, "mediaType": OCI_INDEX}
                entries = ()
            kept = []
            for old in entries:
                name = old.annotations.get(REF_NAME)
                if (tag and name == tag) or (not name and not tag and old.digest == entry.digest):
                    continue
                kept.append(old.to_json())
            document["manifests"] = kept + [entry.to_json()]
            _write_atomic(self.path / "index.json", json.dumps(document, indent=2).encode())
        finally:
            os.close(lock_fd)

    # -- commit --into ----------------------------------------------------------------

    def base(self, ref: str | None) -> tuple[Descriptor, Resolved]:
        """(index entry, image manifest) of the image named ``ref`` (a tag or a digest
        prefix; the only image when None), for this host's platform."""
        entries = self.index().manifests
        if ref is not None:
            chosen = [m for m in entries if m.annotations.get(REF_NAME) == ref
                      or m.digest.startswith(ref)]
        else:
            chosen = list(entries)
        if len(chosen) != 1:
            tags = ", ".join(t for t in self.tags() if t) or "none"
            what = f"no image '{ref}'" if ref is not None and not chosen else \
                "several images" if len(chosen) > 1 else "no images"
            raise UsageError(f"{self.path}: {what}; name the base with --base (tags: {tags})")
        return chosen[0], self.follow(chosen[0], host_platform())

    def append_layer(self, base_ref: str | None, tag: str, layer: Descriptor, diff_id: str, *,
                     created_by: str, created: str, comment: str = "") -> dict:
        """Add image ``tag`` = base + ``layer`` (already stored, an OCI layer media type):
        the config gets the DiffID and a history entry, a new manifest lists the layer."""
        entry, found = self.base(base_ref)
        manifest = found.manifest
        config_document = self.fetch(manifest.config, "config")
        config = dict(ImageConfig.decode(config_document.json(self.files.where),
                                         self.files.where).raw)
        rootfs = dict(config.get("rootfs") or {"type": "layers"})  # type: ignore[arg-type]
        rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
        config["rootfs"] = rootfs
        history_entry = {"created": created, "created_by": created_by}
        if comment:
            history_entry["comment"] = comment
        history = config.get("history")
        config["history"] = (list(history) if isinstance(history, list) else []) + \
            [history_entry]
        config["created"] = created
        config_data = json.dumps(config, separators=(",", ":")).encode()
        config_descriptor = Descriptor.of(config_data, manifest.config.media_type or OCI_CONFIG,
                                          self.write_blob(config_data))
        docker = manifest.media_type == DOCKER_MANIFEST
        layer_type = DOCKER_GZIP_LAYER if docker and layer.media_type == OCI_GZIP_LAYER \
            else layer.media_type
        new_manifest = manifest.to_json()
        new_manifest["config"] = config_descriptor.to_json()
        new_manifest["layers"] = [d.to_json() for d in manifest.layers] + [
            {"mediaType": layer_type, "digest": layer.digest, "size": layer.size}]
        manifest_data = json.dumps(new_manifest, separators=(",", ":")).encode()
        media_type = manifest.media_type or found.document.media_type or OCI_MANIFEST
        leading = found.entry or entry
        extra = {"platform": leading.raw["platform"]} if leading.platform is not None else {}
        new_entry = Descriptor.of(manifest_data, media_type, self.write_blob(manifest_data),
                                  **extra)
        self.add_image(new_entry, tag)
        return {"manifest": new_entry.digest, "config": config_descriptor.digest,
                "tag": tag, "layers": len(new_manifest["layers"])}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
