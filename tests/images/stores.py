"""Synthesised image stores for tests, laid out exactly as FORMATS.md sections 5 and 6 describe
(the daemons are not run): a Docker data root (overlay2) and containers-storage (overlay, vfs),
built from the layers of an OCI layout, with overlay-native layer dirs (0/0 char device
whiteouts, ``trusted.overlay.opaque=y``) as dockerd and rootful podman write them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

from tests.support import extraction_filter

OPAQUE = ".wh..wh..opq"


def oci_image(layout: Path, tag: str) -> tuple[bytes, list[bytes]]:
    """(config bytes, uncompressed layer tars) of ``layout:tag``."""
    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    descriptor = next(m for m in index["manifests"]
                      if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(blob(descriptor["digest"]))
    tars = []
    for layer in manifest["layers"]:
        data = blob(layer["digest"])
        tars.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return blob(manifest["config"]["digest"]), tars


def extract_native(tar: bytes, target: Path) -> None:
    """Unpack a layer tar the way dockerd does: whiteouts become 0/0 char devices."""
    target.mkdir(parents=True, exist_ok=True)
    padded = tar + bytes((-len(tar)) % 512 + 1024)  # umoci's truncated layers (1.4.3)
    base = os.fsencode(target)
    with tarfile.open(fileobj=io.BytesIO(padded), errors="surrogateescape") as archive:
        for member in archive:
            name = os.fsencode(member.name).strip(b"/")
            while name.startswith(b"./"):
                name = name[2:]
            if name in (b"", b"."):
                continue
            parent, _, leaf = name.rpartition(b"/")
            parent_path = base + b"/" + parent if parent else base
            if leaf.startswith(b".wh."):
                if os.path.lexists(parent_path) and not os.path.isdir(parent_path):
                    continue  # whiteout below a file (FORMATS.md 1.4.4)
                os.makedirs(parent_path, exist_ok=True)
                if leaf == OPAQUE.encode():
                    os.setxattr(parent_path, b"trusted.overlay.opaque", b"y")
                else:
                    os.mknod(parent_path + b"/" + leaf[4:], stat.S_IFCHR, 0)
                continue
            archive.extract(member, target, numeric_owner=True,
                            **extraction_filter("fully_trusted"))


def _chain_ids(diff_ids: list[str]) -> list[str]:
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else "sha256:" + hashlib.sha256(
            f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def docker_root(root: Path, config: bytes, tars: list[bytes], name: str = "test/img:v4") -> str:
    """A Docker data root holding one image; returns its image ID."""
    image_dir = root / "image" / "overlay2"
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    (image_dir / "imagedb/content/sha256").mkdir(parents=True)
    (image_dir / "imagedb/content/sha256" / image_id[7:]).write_bytes(config)
    repo = name.rpartition(":")[0]
    (image_dir / "repositories.json").write_text(json.dumps(
        {"Repositories": {repo: {name: image_id,
                                 f"{repo}@sha256:{'a' * 64}": image_id}}}))
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    (root / "overlay2" / "l").mkdir(parents=True)
    for position, (tar, diff_id, chain) in enumerate(zip(tars, diff_ids, _chain_ids(diff_ids), strict=True)):
        layerdb = image_dir / "layerdb" / "sha256" / chain[7:]
        layerdb.mkdir(parents=True)
        cache_id = uuid.uuid4().hex + uuid.uuid4().hex
        (layerdb / "cache-id").write_text(cache_id)
        (layerdb / "diff").write_text(diff_id)
        (layerdb / "size").write_text(str(len(tar)))
        if position:
            (layerdb / "parent").write_text(_chain_ids(diff_ids)[position - 1])
        extract_native(tar, root / "overlay2" / cache_id / "diff")
    return image_id


def _storage_layer_ids(diff_ids: list[str]) -> list[str]:
    ids: list[str] = []
    for diff_id in diff_ids:
        ids.append(diff_id[7:] if not ids else hashlib.sha256(
            f"{ids[-1]}+{diff_id[7:]}".encode()).hexdigest())
    return ids


def containers_storage(root: Path, config: bytes, tars: list[bytes], *, driver: str = "overlay",
                       reference_rootfs: Path | None = None,
                       name: str = "localhost/test/img:v4") -> str:
    """A containers-storage store (overlay or vfs driver) holding one image; its ID."""
    image_id = hashlib.sha256(config).hexdigest()
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    ids = _storage_layer_ids(diff_ids)
    layers = []
    for position, (tar, diff_id, layer_id) in enumerate(zip(tars, diff_ids, ids, strict=True)):
        entry = {"id": layer_id, "created": "2024-01-01T00:00:00Z",
                 "compressed-diff-digest": diff_id, "compressed-size": len(tar),
                 "diff-digest": diff_id, "diff-size": len(tar), "compression": 0}
        if position:
            entry["parent"] = ids[position - 1]
        layers.append(entry)
        if driver == "overlay":
            extract_native(tar, root / "overlay" / layer_id / "diff")
        elif position == len(tars) - 1:
            assert reference_rootfs is not None
            target = root / "vfs" / "dir" / layer_id
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(reference_rootfs), str(target)], check=True)
        else:
            (root / "vfs" / "dir" / layer_id).mkdir(parents=True)
    (root / f"{driver}-layers").mkdir(parents=True)
    (root / f"{driver}-layers" / "layers.json").write_text(json.dumps(layers))
    images = [{"id": image_id, "digest": "sha256:" + "b" * 64, "names": [name],
               "layer": ids[-1], "created": "2024-01-01T00:00:00Z"}]
    (root / f"{driver}-images" / image_id).mkdir(parents=True)
    (root / f"{driver}-images" / "images.json").write_text(json.dumps(images))
    key = "=" + base64.b64encode(f"sha256:{image_id}".encode()).decode()
    (root / f"{driver}-images" / image_id / key).write_bytes(config)
    return image_id
