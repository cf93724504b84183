"""The one tree remover: trees deeper than PATH_MAX, directories of mode 0000, and
symlinks (removed, never followed)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from layerfs.longpath import PATH_MAX
from layerfs.rmtree import remove_tree

PART = b"r" * 200
DEPTH = 40  # 40 * 201 bytes: twice PATH_MAX


def test_removes_a_tree_past_path_max_with_locked_dirs(scratch):
    top = scratch / "top"
    top.mkdir()
    (scratch / "outside").mkdir()
    (scratch / "outside" / "keep").write_text("kept")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for depth in range(DEPTH):
        os.mkdir(PART, 0o755, dir_fd=fd)
        nxt = os.open(PART, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.symlink(str(scratch / "outside"), b"link", dir_fd=fd)
        os.mkdir(b"sibling", 0o755, dir_fd=fd)
        with open(os.open(b"sibling/file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w"):
            pass
        if depth % 3 == 0:
            os.chmod(b"sibling", 0, dir_fd=fd)  # nobody may read or enter it
        os.close(fd)
        fd = nxt
    os.close(fd)
    assert len(os.fsencode(top)) + DEPTH * (len(PART) + 1) > PATH_MAX
    os.chmod(top, 0)
    remove_tree(top)
    assert not top.exists()
    assert (scratch / "outside" / "keep").read_text() == "kept"


def test_a_missing_path_or_a_file(scratch):
    remove_tree(scratch / "missing")
    (scratch / "file").write_text("x")
    os.symlink(scratch, scratch / "link")
    remove_tree(scratch / "file")
    remove_tree(os.fsencode(scratch / "link"))
    assert sorted(os.listdir(scratch)) == []


def test_never_enters_a_mount_inside_the_tree(scratch, needs_root):
    inside = scratch / "top" / "sub" / "mnt"
    inside.mkdir(parents=True)
    (scratch / "top" / "sub" / "file").write_text("x")
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inside)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (inside / "precious").write_text("kept")
        with pytest.raises(OSError) as raised:
            remove_tree(scratch / "top")
        assert raised.value.errno == errno.EBUSY and "mnt" in str(raised.value)
        assert (inside / "precious").read_text() == "kept"
    finally:
        subprocess.run(["umount", str(inside)], check=True)
    remove_tree(scratch / "top")
    assert not (scratch / "top").exists()
