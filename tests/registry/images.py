"""Test images built with umoci (each ``step`` edits the rootfs; umoci repack turns the
change into a layer with real whiteouts) and pushed with skopeo: third-party tools
make what layerfs pulls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from tests.support.umoci import run, umoci_layer, umoci_unpack

Step = Callable[[Path], None]


def umoci_image(layout: Path, tag: str, steps: list[Step], work: Path) -> None:
    if not (layout / "oci-layout").exists():
        run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    for number, step in enumerate(steps):
        umoci_layer(layout, tag, tag, work / f"bundle-{tag}-{number}", step)


def unpack_reference(layout: Path, tag: str, target: Path) -> Path:
    """``umoci unpack`` of the image: the tree a mount must show."""
    return umoci_unpack(layout, tag, target)


def push(layout: Path, tag: str, destination: str, *extra: str) -> None:
    """skopeo copy oci:LAYOUT:TAG docker://DESTINATION (plain HTTP on loopback)."""
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra,
                    f"oci:{layout}:{tag}", f"docker://{destination}"], check=True,
                   capture_output=True, timeout=300)


def manifest_of(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            hex_digest = entry["digest"].partition(":")[2]
            return json.loads((layout / "blobs" / "sha256" / hex_digest).read_text())
    raise KeyError(tag)


# -- the images ---------------------------------------------------------------------------

def _base(root: Path) -> None:
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "os-release").write_text("NAME=layerfs-test\nVERSION=1\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(root / "bin" / "tool", 0o755)
    os.symlink("tool", root / "bin" / "sh")
    doc = root / "usr" / "share" / "doc"
    doc.mkdir(parents=True)
    for number in range(40):
        (doc / f"file{number:02d}.txt").write_text(f"document {number}\n" * (number + 1))


def _app(root: Path) -> None:
    (root / "etc" / "hosts").unlink()
    (root / "etc" / "os-release").write_text("NAME=layerfs-test\nVERSION=2\n")
    (root / "app").mkdir()
    (root / "app" / "data.bin").write_bytes(os.urandom(2 << 20))
    os.link(root / "app" / "data.bin", root / "app" / "data-link.bin")


def _patch(root: Path) -> None:
    shutil.rmtree(root / "usr" / "share" / "doc")
    (root / "usr" / "share" / "doc").mkdir()
    (root / "usr" / "share" / "doc" / "only.txt").write_text("the only document\n")
    (root / "app" / "config.ini").write_text("[app]\nkey = value\n")
    os.chmod(root / "app" / "config.ini", 0o600)


MULTI_LAYER = [_base, _app, _patch]


def big_layer(size: int) -> list[Step]:
    def write(root: Path) -> None:
        (root / "big").mkdir()
        with open(root / "big" / "random.bin", "wb") as out:
            remaining = size
            while remaining:
                chunk = os.urandom(min(remaining, 1 << 20))
                out.write(chunk)
                remaining -= len(chunk)
        (root / "big" / "small.txt").write_text("small\n")
    return [write]


def small_layers(count: int) -> list[Step]:
    def step_for(number: int) -> Step:
        def write(root: Path) -> None:
            (root / f"layer{number}").mkdir()
            (root / f"layer{number}" / "payload.bin").write_bytes(os.urandom(512 << 10))
        return write
    return [step_for(n) for n in range(count)]


def _write_blob(layout: Path, data: bytes) -> dict:
    import hashlib
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.partition(":")[2]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def make_index(layout: Path, tag: str, platforms: dict[str, str]) -> None:
    """Add an image index ``tag`` whose entry for each platform is a copy of an image
    (``{"linux/arm64": "many"}``) with that platform in its config."""
    entries = []
    for platform, source_tag in platforms.items():
        os_name, arch, *variant = platform.split("/")
        manifest = manifest_of(layout, source_tag)
        config_path = layout / "blobs" / "sha256" / manifest["config"]["digest"].partition(":")[2]
        config = json.loads(config_path.read_text())
        config.update({"os": os_name, "architecture": arch})
        if variant:
            config["variant"] = variant[0]
        manifest["config"].update(_write_blob(layout, json.dumps(config).encode()))
        descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      **_write_blob(layout, json.dumps(manifest).encode()),
                      "platform": {"os": os_name, "architecture": arch,
                                   **({"variant": variant[0]} if variant else {})}}
        entries.append(descriptor)
    index_blob = json.dumps({"schemaVersion": 2,
                             "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": entries}).encode()
    top = json.loads((layout / "index.json").read_text())
    top["manifests"] = [m for m in top["manifests"] if (m.get("annotations") or {}).get(
        "org.opencontainers.image.ref.name") != tag]
    top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                             **_write_blob(layout, index_blob),
                             "annotations": {"org.opencontainers.image.ref.name": tag}})
    (layout / "index.json").write_text(json.dumps(top))
