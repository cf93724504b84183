"""``layerfs export`` flattens the merged tree to a tar that extracts to exactly what
``umoci unpack`` and the kernel overlay show; ``cat`` and ``ls`` read it without mounting."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerfs import treediff
from layerfs.explore.mounts import kernel_overlay_mounted
from layerfs.explore.native import native_layers
from layerfs.images import open_image
from layerfs.index import PathIndex
from layerfs.unpack import LayerCache
from tests.explore.images import BIG, have, umoci_unpack
from tests.support.mounting import layerfs_command, layerfs_env, run_layerfs


def export(*args: str) -> bytes:
    result = subprocess.run(layerfs_command("export", *args), env=layerfs_env(),
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def extract(data: bytes, target: Path) -> Path:
    """GNU tar as root keeps owners, modes, devices, xattrs and ns mtimes."""
    target.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "--same-permissions", "-xf", "-", "-C", str(target)], input=data,
                   check=True)
    return target


def compare(expected: Path, actual: Path) -> None:
    left, right = treediff.snapshot(expected), treediff.snapshot(actual)
    left.pop(b""), right.pop(b"")  # the root is the extraction dir, not the image's
    # a merged dir shows nlink 1 (as the kernel's), an extracted one 2 + subdirs
    found = [d for d in treediff.diff(left, right)
             if not (d.property == "nlink" and left[d.path].type == "d")]
    assert found == []


@pytest.fixture
def needs_root_tar():
    if os.geteuid() != 0:
        pytest.skip("extracting owners and devices needs root")
    if not have("tar"):
        pytest.skip("tar is not installed")


@pytest.mark.usefixtures("needs_root_tar")
def test_export_extracts_to_umoci_unpack(umoci_layout, cache_dir, tmp_path):
    output = tmp_path / "rootfs.tar"
    export(f"{umoci_layout}:v3", "--cache-dir", str(cache_dir), "-o", str(output))
    data = output.read_bytes()
    rootfs = umoci_unpack(umoci_layout, "v3", tmp_path / "bundle")
    compare(rootfs, extract(data, tmp_path / "extracted"))
    # sorted and reproducible; '-' is stdout
    assert export(f"{umoci_layout}:v3", "--cache-dir", str(cache_dir), "-o", "-") == data
    with tarfile.open(output) as tar:
        members = tar.getmembers()
    names = [m.name.rstrip("/") for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert not any(".wh." in name for name in names)
    hosts = next(m for m in members if m.name == "etc/hosts")
    assert hosts.pax_headers["SCHILY.xattr.user.comment"] == "changed"
    assert not (tmp_path / "rootfs.tar.partial").exists()


@pytest.mark.usefixtures("needs_kernel_overlay", "needs_root_tar")
def test_export_extracts_to_the_kernel_overlay(stack_image, cache_dir, tmp_path):
    hard = tmp_path / "hard"  # a layer with hard links, a fifo and a device on top
    shutil.copytree(stack_image, hard, symlinks=True)
    top = hard / "l3"
    (top / "links").mkdir(parents=True)
    (top / "links/a").write_bytes(b"linked")
    os.link(top / "links/a", top / "links/b")
    os.mkfifo(top / "links/fifo")
    os.mknod(top / "links/tty", 0o620 | 0o020000, os.makedev(4, 1))
    os.chown(top / "links/tty", 0, 5)
    os.setxattr(top / "links/a", "user.note", b"\x00\xffbinary")
    os.utime(top / "links/a", ns=(1, 1_700_000_000_123_456_789))
    (hard / "layers").write_text("l0\nl1\nl2\nl3\n")
    data = export(str(hard), "-o", "-")
    image = open_image(str(hard), cache=LayerCache(cache_dir), quiet=True)
    (tmp_path / "native").mkdir()
    lowers = native_layers(PathIndex(image.layers), tmp_path / "native")
    with kernel_overlay_mounted(tmp_path / "kernel", lowers, tmp_path / "links") as merged:
        compare(merged, extract(data, tmp_path / "extracted"))


def test_cat_and_ls_read_without_mounting(stack_image):
    cat = subprocess.run(layerfs_command("cat", str(stack_image), "/etc/hosts"),
                         env=layerfs_env(), capture_output=True)
    assert cat.returncode == 0 and cat.stdout == b"c" * 30
    big = subprocess.run(layerfs_command("cat", str(stack_image), "copy/big-again"),
                         env=layerfs_env(), capture_output=True)
    assert hashlib.sha256(big.stdout).digest() == hashlib.sha256(BIG).digest()
    via_link = run_layerfs("cat", str(stack_image), "/bin/sh-link")  # -> /bin/sh
    assert via_link.returncode == 0 and via_link.stdout == "sh"
    for path, message in (("/gone/x", "no such file"), ("/tmp/big", "no such file"),
                          ("/etc", "is a directory"), ("/etc/hosts/x", "not a directory")):
        result = run_layerfs("cat", str(stack_image), path)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    listing = run_layerfs("ls", str(stack_image), "/opq")
    assert listing.stdout.split() == ["kept", "new"]  # opaque: "old" hidden
    root = run_layerfs("ls", str(stack_image)).stdout.split()
    assert "gone" not in root and "swap" in root
    long = run_layerfs("ls", "-l", str(stack_image), "/etc").stdout.splitlines()
    assert long[0].split() == ["MODE", "LINKS", "UID", "GID", "SIZE", "MODIFIED", "LAYER",
                               "NAME"]
    hosts = next(line for line in long if line.endswith(" hosts")).split()
    assert hosts[0] == "-rw-------" and hosts[4] == "30" and hosts[7] == "3"
    passwd = next(line for line in long if line.endswith(" passwd")).split()
    assert passwd[7] == "1"
    doc = json.loads(run_layerfs("ls", "--json", str(stack_image), "/bin").stdout)
    by_path = {entry["path"]: entry for entry in doc}
    assert by_path["/bin/sh-link"]["target"] == "/bin/sh"
    assert by_path["/bin/sh-link"]["layer"]["index"] == 3
    assert by_path["/bin/sh"]["layer"]["index"] == 1 and by_path["/bin/sh"]["mode"] == 0o755


def test_export_to_a_fifo_writes_through_it_and_leaves_it_a_fifo(stack_image, tmp_path):
    """-o names a device or a fifo (/dev/null, a pipe): the tar goes through it; the
    path is never replaced by a file (a .partial renamed over /dev/null was)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(layerfs_command("export", str(stack_image), "-o", str(fifo)),
                                env=layerfs_env(), capture_output=True, timeout=300)
        data = reader.communicate(timeout=60)[0]
    finally:
        reader.kill()
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert data == export(str(stack_image), "-o", "-")
    assert not (tmp_path / "pipe.partial").exists()
