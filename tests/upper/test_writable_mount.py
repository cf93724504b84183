"""`layerfs mount --upper` as a user runs it: inode numbers, options, errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.support.layerspec import File, materialize_stack
from tests.support.mounting import layerfs_mounted, run_layerfs

STACK = [{b"d/file": File(b"lower"), b"d/other": File(b"o"), b"top": File(b"t")},
         {b"d/more": File(b"m")}]


@pytest.fixture
def dirs(scratch: Path) -> dict[str, Path]:
    layers = materialize_stack(STACK, scratch, "native")
    paths = {name: scratch / name for name in ("upper", "work", "mnt")}
    for path in paths.values():
        path.mkdir()
    paths["args"] = [a for layer in layers for a in ("--layer", str(layer))]  # type: ignore
    return paths


def test_inode_numbers_survive_copy_up_rename_and_remount(dirs):
    args = [*dirs["args"], "--upper", str(dirs["upper"]), "--work", str(dirs["work"])]
    mnt = dirs["mnt"]
    with layerfs_mounted(mnt, *args):
        before = os.stat(mnt / "d/file").st_ino
        with open(mnt / "d/file", "ab") as f:
            f.write(b" appended")
        assert os.stat(mnt / "d/file").st_ino == before
        os.rename(mnt / "d/file", mnt / "moved")
        os.rename(mnt / "d", mnt / "d2")
        dir_ino = os.stat(mnt / "d2").st_ino
        assert os.stat(mnt / "moved").st_ino == before
    with layerfs_mounted(mnt, *args):
        assert os.stat(mnt / "moved").st_ino == before
        assert os.stat(mnt / "d2").st_ino == dir_ino
        assert (mnt / "moved").read_bytes() == b"lower appended"
        assert "trusted.overlay.layerfs.ino" not in os.listxattr(mnt / "moved")


def test_upper_needs_a_workdir_on_its_filesystem_and_outside_it(dirs, scratch):
    args = dirs["args"]
    inside = dirs["upper"] / "work"
    inside.mkdir()
    result = run_layerfs("mount", *args, "--upper", str(dirs["upper"]), "--work", str(inside),
                         str(dirs["mnt"]))
    assert result.returncode == 1 and "nested" in result.stderr
    result = run_layerfs("mount", *args, "--upper", str(scratch / "missing"), str(dirs["mnt"]))
    assert result.returncode == 1 and "no such directory" in result.stderr
    result = run_layerfs("mount", "-o", "upperdir=/x", *args, str(dirs["mnt"]))
    assert result.returncode == 2


def test_without_upper_writes_are_erofs_and_with_ro_too(dirs):
    mnt = dirs["mnt"]
    with layerfs_mounted(mnt, *dirs["args"], "-o",
                         f"upperdir={dirs['upper']},workdir={dirs['work']},ro"):
        with pytest.raises(OSError) as raised:
            (mnt / "new").write_bytes(b"x")
        assert raised.value.errno == errno.EROFS


def test_default_workdir_beside_the_upper(dirs):
    mnt = dirs["mnt"]
    with layerfs_mounted(mnt, *dirs["args"], "--upper", str(dirs["upper"])):
        (mnt / "new").write_bytes(b"x")
    assert (dirs["upper"].parent / ".upper.work" / "work").is_dir()
    assert (dirs["upper"] / "new").read_bytes() == b"x"


def test_one_upper_serves_one_mount_at_a_time(dirs, scratch):
    args = [*dirs["args"], "--upper", str(dirs["upper"]), "--work", str(dirs["work"])]
    second = scratch / "second"
    second.mkdir()
    with layerfs_mounted(dirs["mnt"], *args):
        result = run_layerfs("mount", *args, str(second))
        assert result.returncode == 1 and "in use by another layerfs mount" in result.stderr
    with layerfs_mounted(second, *args):
        assert (second / "top").read_bytes() == b"t"
