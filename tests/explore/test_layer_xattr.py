"""``user.layerfs.layer``: readable by name on every entry of a mount, never listed."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from tests.support.mounting import layerfs_mounted


def test_layer_xattr_by_name_only(stack_image: Path, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, str(stack_image)):
        assert os.getxattr(mountpoint / "etc/hosts", "user.layerfs.layer") == b"3 l2"
        assert os.getxattr(mountpoint / "etc/passwd", "user.layerfs.layer") == b"1 l0"
        assert os.getxattr(mountpoint / "opq", "user.layerfs.layer") == b"2 l1"
        assert os.getxattr(mountpoint, "user.layerfs.layer") == b"3 l2"
        for path in (mountpoint, mountpoint / "etc/hosts", mountpoint / "opq"):
            assert "user.layerfs.layer" not in os.listxattr(path)
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-a", str(mountpoint), str(copy)], check=True)
    for path in (copy, copy / "etc/hosts"):
        try:
            os.getxattr(path, "user.layerfs.layer")
            raise AssertionError("cp -a copied user.layerfs.layer")
        except OSError as exc:
            assert exc.errno == errno.ENODATA


def test_layer_xattr_names_the_diff_id(umoci_layout: Path, cache_dir: Path,
                                       tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, "--cache-dir", str(cache_dir), f"{umoci_layout}:v3"):
        value = os.getxattr(mountpoint / "etc/hosts", "user.layerfs.layer").decode()
        number, diff_id = value.split(" ")
        assert number == "2" and diff_id.startswith("sha256:") and len(diff_id) == 71
        assert os.getxattr(mountpoint / "data/only/here", "user.layerfs.layer").startswith(b"3 ")
