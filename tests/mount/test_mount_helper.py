"""Images in mount(8) and fstab: ``mount -t fuse.layerfs IMAGE MNT``, through
/sbin/mount.fuse.layerfs and through mount.fuse3 (which runs ``layerfs``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from layerfs.explore.mounts import force_unmount, is_mounted
from layerfs.mount_helper import mount_arguments
from tests.explore.images import layer_dirs_image
from tests.support.mounting import REPO_ROOT


def test_options_become_layerfs_mount_arguments():
    args = mount_arguments(["/img dir:tag", "/mnt", "-o",
                            "ro,nodev,cache-dir=/c\\,d,format=oci,lazy,x-systemd.foo=1,"
                            "upperdir=/u,workdir=/w,noauto,suid", "-n"])
    assert args[:2] == ["mount", "--quiet"] and args[-2:] == ["/img dir:tag", "/mnt"]
    flags = args[2:-2]
    assert flags[flags.index("--cache-dir") + 1] == "/c,d"
    assert flags[flags.index("--format") + 1] == "oci" and "--lazy" in flags
    passed = flags[flags.index("-o") + 1].split(",")
    assert passed[:4] == ["ro", "nodev", "upperdir=/u", "workdir=/w"]
    assert ("allow_other" in passed) == (os.geteuid() == 0)
    with pytest.raises(SystemExit):
        mount_arguments(["/mnt"])


@contextlib.contextmanager
def program(path: Path, module: str) -> Iterator[None]:
    """This checkout's ``module`` as ``path`` for the test's duration (as `pip install`
    into /usr would put it); nothing if something is installed there already."""
    if path.exists():
        yield
        return
    path.write_text(f"#!/bin/sh\nPYTHONPATH={REPO_ROOT} exec {sys.executable} -m {module} "
                    "\"$@\"\n")
    path.chmod(0o755)
    try:
        yield
    finally:
        path.unlink()


@pytest.fixture
def setup(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mount(8) of a FUSE type needs root here")
    if shutil.which("mount.fuse3") is None:
        pytest.skip("mount.fuse3 is missing (package fuse3)")
    image = layer_dirs_image(tmp_path / "an image")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    try:
        yield image, mountpoint
    finally:
        force_unmount(mountpoint)


def check_and_unmount(image: Path, mountpoint: Path) -> None:
    try:
        assert is_mounted(mountpoint)
        assert (mountpoint / "etc/hosts").read_bytes() == b"c" * 30
        assert not (mountpoint / "gone").exists()
        with pytest.raises(OSError):
            (mountpoint / "new").write_text("x")  # read-only
        sources = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
        assert [str(image).replace(" ", "\\040"), str(mountpoint), "fuse.layerfs"] in sources
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    deadline = time.monotonic() + 10  # the daemon exits by itself
    while subprocess.run(["pgrep", "-f", f"mount.*{mountpoint}"],
                         capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the daemon outlived umount"
        time.sleep(0.1)


def test_mount_t_through_mount_fuse_layerfs(setup, tmp_path):
    image, mountpoint = setup
    with program(Path("/usr/sbin/mount.fuse.layerfs"), "layerfs.mount_helper"):
        result = subprocess.run(["mount", "-t", "fuse.layerfs", str(image), str(mountpoint),
                                 "-o", f"ro,nodev,cache-dir={tmp_path / 'cache'}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        check_and_unmount(image, mountpoint)


def test_fstab_line_through_mount_fuse3(setup, tmp_path):
    """Without mount.fuse.layerfs, mount(8) goes through mount.fuse3, which runs
    ``layerfs IMAGE MOUNTPOINT -o OPTIONS``."""
    image, mountpoint = setup
    if Path("/usr/sbin/mount.fuse.layerfs").exists() or Path("/sbin/mount.fuse.layerfs").exists():
        pytest.skip("mount.fuse.layerfs is installed: mount(8) would not use mount.fuse3")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{str(image).replace(' ', chr(92) + '040')} {mountpoint} fuse.layerfs "
                     "ro,noauto,nofail,x-test=1 0 0\n")
    with program(Path("/usr/local/bin/layerfs"), "layerfs"):
        result = subprocess.run(["mount", "--fstab", str(fstab), str(mountpoint)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        check_and_unmount(image, mountpoint)


def test_a_bad_image_fails_in_one_line(setup, tmp_path):
    _, mountpoint = setup
    with program(Path("/usr/sbin/mount.fuse.layerfs"), "layerfs.mount_helper"):
        result = subprocess.run(["mount", "-t", "fuse.layerfs", str(tmp_path / "missing"),
                                 str(mountpoint)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "missing" in result.stderr
    assert not is_mounted(mountpoint)
