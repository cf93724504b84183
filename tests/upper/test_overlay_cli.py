"""`layerfs-overlay`, the mount(8) helper: driven exactly like fuse-overlayfs."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerfs.overlay_defaults import OverlayDefaults, read_defaults
from tests.support.layerspec import File, Whiteout, materialize_stack
from tests.support.mounting import REPO_ROOT, force_unmount, is_mounted, layerfs_env

STACK = [{b"a/x": File(b"x"), b"gone": File(b"g")}, {b"gone": Whiteout(), b"b": File(b"b")}]


@pytest.fixture
def setup(scratch: Path):
    layers = materialize_stack(STACK, scratch, "native")
    for name in ("upper", "work", "mnt"):
        (scratch / name).mkdir()
    lowerdir = ":".join(str(p) for p in reversed(layers))
    options = f"lowerdir={lowerdir},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
    yield scratch, options
    force_unmount(scratch / "mnt")


def daemons(mountpoint: Path) -> list[int]:
    wanted = os.fsencode(mountpoint)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in args and b"layerfs.overlay_cli" in args:
                found.append(int(entry))
    return found


def run_helper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layerfs.overlay_cli", *args],
                          env=layerfs_env(), capture_output=True, text=True, timeout=60)


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("order", ["options first", "options last"])
def test_returns_once_live_and_exits_after_a_plain_umount(setup, order):
    scratch, options = setup
    mnt = scratch / "mnt"
    extra = "rw,nodev,noatime,index=off,xino=auto,metacopy=off,redirect_dir=on,lazytime,bogus"
    args = (["-o", options, "-o", extra, "myoverlay", str(mnt)] if order == "options first"
            else ["myoverlay", str(mnt), f"-o{options},{extra}"])
    result = run_helper(*args)
    assert result.returncode == 0, result.stderr
    assert is_mounted(mnt)  # live when it returned
    assert "unknown argument ignored: bogus" in result.stderr
    line = next(m for m in Path("/proc/self/mounts").read_text().splitlines()
                if f" {mnt} " in m)
    assert line.startswith("myoverlay ") and " fuse.layerfs-overlay " in line
    if os.geteuid() == 0:
        assert "allow_other" in line and "default_permissions" in line
    assert sorted(os.listdir(mnt)) == ["a", "b"]
    (mnt / "a" / "new").write_bytes(b"n")
    pids = daemons(mnt)
    assert len(pids) == 1
    subprocess.run(["umount", str(mnt)] if os.geteuid() == 0 else
                   ["fusermount3", "-u", str(mnt)], check=True)
    assert wait_gone(pids), "the daemon did not exit after umount"
    assert (scratch / "upper" / "a" / "new").read_bytes() == b"n"


def test_bad_invocations_fail_with_a_message(setup):
    scratch, options = setup
    assert run_helper(str(scratch / "mnt")).returncode == 2  # no lowerdir
    result = run_helper("-o", "lowerdir=/nonexistent", str(scratch / "mnt"))
    assert result.returncode == 1 and "/nonexistent" in result.stderr
    assert run_helper("-x", "-o", options, str(scratch / "mnt")).returncode == 2
    result = run_helper("-o", options + ",engine=bogus", str(scratch / "mnt"))
    assert result.returncode == 2 and "engine=bogus" in result.stderr
    assert not is_mounted(scratch / "mnt")


def test_mount_t_fuse_layerfs_overlay(setup):
    """mount(8) runs mount.fuse3, which runs the helper from a fixed PATH."""
    scratch, options = setup
    if os.geteuid() != 0:
        pytest.skip("mount(8) of a FUSE type needs root here")
    if shutil.which("mount.fuse3") is None:
        pytest.skip("mount.fuse3 is missing (package fuse3)")
    installed = any(os.access(f"{d}/layerfs-overlay", os.X_OK)
                    for d in ("/usr/bin", "/usr/local/bin", "/bin", "/sbin", "/usr/sbin"))
    wrapper = Path("/usr/local/bin/layerfs-overlay")
    if not installed:
        # mount.fuse3 runs helpers from a fixed PATH: put this checkout's helper
        # there for the test's duration, as `pip install` into /usr/local would.
        wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO_ROOT} exec {sys.executable} "
                           "-m layerfs.overlay_cli \"$@\"\n")
        wrapper.chmod(0o755)
    try:
        _mount_t_and_list(scratch, options)
    finally:
        if not installed:
            wrapper.unlink()


def _mount_t_and_list(scratch, options) -> None:
    mnt = scratch / "mnt"
    subprocess.run(["mount", "-t", "fuse.layerfs-overlay", "overlay", str(mnt), "-o", options],
                   check=True, capture_output=True, timeout=60)
    try:
        assert sorted(os.listdir(mnt)) == ["a", "b"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("option", ["", ",redirect_dir=on"])
def test_redirect_dir_takes_the_overlay_modules_default(setup, option):
    """As mount -t overlay: without redirect_dir= the module parameter decides
    whether a lower dir can be renamed; redirect_dir=on always allows it."""
    scratch, options = setup
    if os.geteuid() != 0:
        pytest.skip("as a normal user the kernel makes no redirects (userxattr)")
    default = read_defaults().redirect_dir
    if default is None:
        pytest.skip("no overlay module parameters on this machine")
    mnt = scratch / "mnt"
    result = run_helper("-o", options + option, str(mnt))
    assert result.returncode == 0, result.stderr
    try:
        if option or default == "on":
            os.rename(mnt / "a", mnt / "moved")
            assert sorted(os.listdir(mnt)) == ["b", "moved"]
        else:
            with pytest.raises(OSError) as refused:
                os.rename(mnt / "a", mnt / "moved")
            assert refused.value.errno == errno.EXDEV
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_overlay_defaults_are_read_as_the_kernel_reads_them(tmp_path):
    for name, value in (("redirect_dir", "N"), ("redirect_always_follow", "Y"),
                        ("index", "Y"), ("metacopy", "N"), ("xino_auto", "N")):
        (tmp_path / name).write_text(value + "\n")
    assert read_defaults(str(tmp_path)) == OverlayDefaults(
        redirect_dir="follow", index=True, metacopy=False, xino="off")
    (tmp_path / "redirect_always_follow").write_text("N\n")
    assert read_defaults(str(tmp_path)).redirect_dir == "nofollow"
    (tmp_path / "redirect_dir").write_text("Y\n")
    assert read_defaults(str(tmp_path)).redirect_dir == "on"
    assert read_defaults(str(tmp_path / "absent")) == OverlayDefaults()
