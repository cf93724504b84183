"""Stores written by the real daemons: a throw-away dockerd and podman, each with private
paths, load an image built by umoci; layerfs mounts it from the store in place, and shows
what `umoci unpack` shows and what the kernel overlay shows over the same diff dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from layerfs import treediff
from layerfs.images import open_image
from tests.support.daemons import throwaway_daemon
from tests.support.mounting import (
    kernel_overlay_available,
    kernel_overlay_mounted,
    unmount_below,
)
from tests.support.umoci import umoci_layer

from .builtimages import LONG, _populate_base, have, run, umoci_reference
from .mounting import mounted, snapshot

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd and rootful podman need root"),
    pytest.mark.skipif(not have("umoci") or not have("skopeo"), reason="umoci/skopeo missing"),
]
NAME = "layerfs/daemon-test:v3"


def build_daemon_friendly_layout(work: Path) -> Path:
    """Like builtimages' layout, without the directory-replaced-by-a-file layer that
    dockerd and containerd refuse (FORMATS.md 1.4.4): tags v1 (base), v2 (deletions,
    a 259-byte whiteout name), v3 (an opaque directory)."""
    layout, bundle = work / "layout", work / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:v1")
    umoci_layer(layout, "v1", "v1", bundle, _populate_base)

    def deletions(rootfs: Path) -> None:
        (rootfs / "etc/config.txt").unlink()
        shutil.rmtree(rootfs / "data/dir2")
        (rootfs / "data/dir1/a").unlink()
        (rootfs / "odd" / LONG).unlink()
        (rootfs / "etc/hosts").write_text("127.0.0.1 changed\n")

    umoci_layer(layout, "v1", "v2", bundle, deletions)
    opaque = work / "opaque"
    (opaque / "only").mkdir(parents=True)
    (opaque / "only/here").write_text("opaque\n")
    run("umoci", "tag", "--image", f"{layout}:v2", "v3")
    run("umoci", "insert", "--image", f"{layout}:v3", "--opaque", opaque, "/data")
    return layout


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("daemon-image")
    layout = build_daemon_friendly_layout(work)
    run("skopeo", "copy", "-q", f"oci:{layout}:v3", f"docker-archive:{work}/img.tar:{NAME}")
    return {"tar": work / "img.tar", "reference": snapshot(umoci_reference(layout, "v3", work))}


@pytest.fixture
def short_dir():
    """Daemons want short paths (unix sockets, podman's runroot under 50 characters)."""
    path = Path(tempfile.mkdtemp(prefix="lfd", dir="/var/tmp"))
    try:
        yield path
    finally:
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def dockerd(base: Path) -> Iterator[list[str]]:
    """A dockerd with its own data root, exec root and socket; stopped at the end."""
    if not have("dockerd") or not have("docker"):
        pytest.skip("dockerd is not installed (Debian package docker.io)")
    root, exec_root, sock = base / "root", base / "exec", base / "docker.sock"
    exec_root.mkdir(parents=True)
    command = ["dockerd", "--data-root", str(root), "--exec-root", str(exec_root),
               "-H", f"unix://{sock}", "--pidfile", str(base / "docker.pid"),
               "--iptables=false", "--ip6tables=false", "--bridge=none",
               "--storage-driver=overlay2"]
    client = ["docker", "-H", f"unix://{sock}"]
    with throwaway_daemon("dockerd", command, [*client, "info"], base, poll=0.5):
        yield client


def compare_with_kernel(store_image: str, mountpoint: Path, base: Path) -> list:
    """layerfs over the store vs the kernel overlay over the same diff dirs."""
    reason = kernel_overlay_available()
    if reason is not None:
        pytest.skip(reason)
    layers = [Path(layer.root) for layer in open_image(store_image).layers]
    kernel_mnt = base / "kernel"
    kernel_mnt.mkdir()
    with kernel_overlay_mounted(kernel_mnt, layers):
        expected = treediff.snapshot(kernel_mnt)
    with mounted(store_image, mountpoint):
        seen = treediff.snapshot(mountpoint)
    return [d for d in treediff.diff(expected, seen)
            if not (d.property == "presence" and d.left == treediff.PHANTOM)]


def test_docker_data_root_written_by_dockerd(archive, tmp_path, short_dir):
    with dockerd(short_dir) as docker:
        loaded = subprocess.run([*docker, "load", "-i", str(archive["tar"])],
                                capture_output=True, text=True)
        assert loaded.returncode == 0, loaded.stderr
        image_id = subprocess.run([*docker, "image", "inspect", "-f", "{{.Id}}", NAME],
                                  check=True, capture_output=True, text=True).stdout.strip()
        store = short_dir / "root"
        for reference in (NAME, image_id, image_id.split(":")[1][:12]):
            with mounted(f"{store}:{reference}", tmp_path / "mnt") as root:
                seen = snapshot(root)
            assert seen == archive["reference"], reference
        differences = compare_with_kernel(f"{store}:{NAME}", tmp_path / "mnt", tmp_path)
        assert not differences, "\n".join(map(str, differences))


def test_containers_storage_written_by_podman(archive, tmp_path, short_dir):
    if not have("podman"):
        pytest.skip("podman is not installed")
    store, runroot = short_dir / "storage", short_dir / "run"
    podman = ["podman", "--root", str(store), "--runroot", str(runroot),
              "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend",
              "none"]
    try:
        loaded = subprocess.run([*podman, "load", "-i", str(archive["tar"])], capture_output=True,
                                text=True, timeout=300)
        if loaded.returncode != 0:
            pytest.skip(f"podman cannot load here: {loaded.stderr.strip()[-300:]}")
        names = json.loads((store / "overlay-images" / "images.json").read_text())
        assert any(f"docker.io/{NAME}" in image.get("names", []) or NAME in image.get("names", [])
                   for image in names)
        with mounted(f"{store}:{NAME}", tmp_path / "mnt") as root:
            seen = snapshot(root)
        # containers-storage creates every layer's diff root 0555 (FORMATS.md 6.3).
        assert seen.pop(".", None) is None
        assert seen == archive["reference"]
        differences = compare_with_kernel(f"{store}:{NAME}", tmp_path / "mnt", tmp_path)
        assert not differences, "\n".join(map(str, differences))
    finally:
        subprocess.run([*podman, "system", "reset", "--force"], capture_output=True, timeout=120)
