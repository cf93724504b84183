"""Appending a committed layer to an OCI image layout as a new tagged image.

The base image's config gets the layer's DiffID and a history entry; a new
manifest lists the base layers plus the new blob; ``index.json`` gets the new
manifest under the tag (taken from any image that had it, as ``umoci`` does).
Blobs are written under a temporary name and renamed to their digest, and
``index.json`` is replaced atomically, so an interrupted commit leaves the
layout as it was (plus at most unreferenced blobs).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ..errors import ImageError, UsageError
from ..images.platform import host_platform, matches
from .commit import LayerBlob

REF_NAME = "org.opencontainers.image.ref.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def rfc3339(epoch: int | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(
        epoch if epoch is not None else int(datetime.datetime.now().timestamp()),
        tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Layout:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / "oci-layout").is_file() or not (self.path / "index.json").is_file():
            raise ImageError(f"{self.path}: not an OCI image layout (no oci-layout/index.json)")

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        return self.path / "blobs" / algorithm / hex_digest

    def read_json(self, digest: str) -> dict:
        try:
            document = json.loads(self.blob_path(digest).read_bytes())
        except (OSError, ValueError) as exc:
            raise ImageError(f"{self.path}: blob {digest} unreadable: {exc}") from None
        if not isinstance(document, dict):
            raise ImageError(f"{self.path}: blob {digest} is not a JSON object")
        return document

    def _temporary(self) -> Path:
        directory = self.path / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".layerfs-{uuid.uuid4().hex}"

    def put_bytes(self, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            temporary = self._temporary()
            temporary.write_bytes(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        return {"digest": digest, "size": len(data)}

    def put_file(self, path: str, digest: str, *, move: bool) -> None:
        target = self.blob_path(digest)
        if target.exists():
            if move:
                os.unlink(path)
            return
        temporary = self._temporary()
        if move:
            os.replace(path, temporary)
        else:
            shutil.copyfile(path, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)

    def new_blob_file(self) -> str:
        """A path inside the layout to write a blob to before it is named by digest."""
        return str(self._temporary())

    # -- images ---------------------------------------------------------------------

    def index(self) -> dict:
        return json.loads((self.path / "index.json").read_text())

    def tags(self) -> list[str]:
        return [m.get("annotations", {}).get(REF_NAME, "") for m in self.index().get("manifests")
                or []]

    def base(self, ref: str | None) -> tuple[dict, dict]:
        """(index descriptor, image manifest) of the base image."""
        manifests = [m for m in self.index().get("manifests") or [] if isinstance(m, dict)]
        if ref is not None:
            chosen = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) == ref
                      or m.get("digest", "").startswith(ref)]
        else:
            chosen = manifests
        if len(chosen) != 1:
            tags = ", ".join(t for t in self.tags() if t) or "none"
            what = f"no image '{ref}'" if ref is not None and not chosen else \
                "several images" if len(chosen) > 1 else "no images"
            raise UsageError(f"{self.path}: {what}; name the base with --base (tags: {tags})")
        descriptor = chosen[0]
        document = self.read_json(descriptor["digest"])
        for _ in range(8):
            if descriptor.get("mediaType") not in INDEX_TYPES and "manifests" not in document:
                return descriptor, document
            platformed = [m for m in document.get("manifests") or []
                          if matches(m.get("platform"), host_platform())]
            if not platformed:
                raise ImageError(f"{self.path}: the base index has no image for "
                                 f"{host_platform()}")
            descriptor = platformed[0]
            document = self.read_json(descriptor["digest"])
        raise ImageError(f"{self.path}: image indexes nested too deeply")

    def append(self, base_ref: str | None, tag: str, blob: LayerBlob, *, created_by: str,
               created: str, comment: str = "") -> dict:
        """Add image ``tag`` = base + the layer; the layer's blob must already be stored."""
        descriptor, manifest = self.base(base_ref)
        config = self.read_json(manifest["config"]["digest"])
        rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs.setdefault("diff_ids", []).append(blob.diff_id)
        entry = {"created": created, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        config.setdefault("history", []).append(entry)
        config["created"] = created
        config_descriptor = self.put_bytes(json.dumps(config, separators=(",", ":")).encode())
        config_descriptor = {"mediaType": manifest["config"].get("mediaType", OCI_CONFIG),
                             **config_descriptor}
        docker = manifest.get("mediaType") == DOCKER_MANIFEST
        layer_type = DOCKER_GZIP_LAYER if docker and blob.compression == "gzip" \
            else blob.media_type
        new_manifest = dict(manifest)
        new_manifest["config"] = config_descriptor
        new_manifest["layers"] = list(manifest.get("layers") or []) + [
            {"mediaType": layer_type, "digest": blob.digest, "size": blob.size}]
        manifest_descriptor = self.put_bytes(json.dumps(new_manifest, separators=(",", ":"))
                                             .encode())
        media_type = manifest.get("mediaType") or descriptor.get("mediaType") or OCI_MANIFEST
        new_descriptor = {"mediaType": media_type, **manifest_descriptor,
                          "annotations": {REF_NAME: tag}}
        if descriptor.get("platform"):
            new_descriptor["platform"] = descriptor["platform"]
        index = self.index()
        kept = []
        for item in index.get("manifests") or []:
            annotations = dict(item.get("annotations") or {})
            if annotations.get(REF_NAME) == tag:
                continue  # the tag moves to the new image
            kept.append(item)
        index["manifests"] = kept + [new_descriptor]
        temporary = self.path / f".index.json.{uuid.uuid4().hex}"
        temporary.write_text(json.dumps(index, separators=(",", ":")))
        os.replace(temporary, self.path / "index.json")
        return {"manifest": manifest_descriptor["digest"], "config": config_descriptor["digest"],
                "tag": tag, "layers": len(new_manifest["layers"])}
