"""Entries deeper than PATH_MAX below the mount root (pjdfstest's */03.t): their
paths in the upper dir are longer than any one system call takes, yet every
operation works on them as on the kernel overlay, also after a remount.

The test reaches them with descriptors (``dir_fd``), as a program that ``cd``s
deep does; snapshots of the whole tree are taken only once they are gone.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.layerspec import File
from tests.support.overlaypair import OverlayPair
from tests.upper import ops

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay")

PART = b"d" * 200
DEPTH = 24  # 24 * 201 bytes: past PATH_MAX from the mount root


def _walk(root: Path, create: bool) -> int:
    """A descriptor of the deepest dir, made on the way if ``create``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):
        if create:
            os.mkdir(PART, 0o755, dir_fd=fd)
        nxt = os.open(PART, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    return fd


def _shown(fd: int) -> dict:
    """What the deepest dir holds, without inode numbers or times."""
    shown = {}
    for name in sorted(os.listdir(fd)):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        entry = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_nlink,
                 st.st_size if not stat.S_ISDIR(st.st_mode) else None)
        if stat.S_ISLNK(st.st_mode):
            entry += (os.readlink(name, dir_fd=fd),)
        elif stat.S_ISREG(st.st_mode):
            file = os.open(name, os.O_RDONLY, dir_fd=fd)
            try:
                entry += (os.read(file, 100), sorted(os.listxattr(file)))
            finally:
                os.close(file)
        shown[name] = entry
    return shown


def build(root: Path) -> dict:
    fd = _walk(root, create=True)
    try:
        file = os.open("file", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644, dir_fd=fd)
        try:
            os.write(file, b"deep data")
            os.setxattr(file, b"user.deep", b"1")
        finally:
            os.close(file)
        os.chmod("file", 0o640, dir_fd=fd)
        os.chown("file", 1000, 1000, dir_fd=fd)
        os.utime("file", ns=(10**18, 10**18), dir_fd=fd)
        os.truncate(f"/proc/self/fd/{fd}/file", 4)
        os.link("file", "hardlink", src_dir_fd=fd, dst_dir_fd=fd)
        os.rename("hardlink", "renamed", src_dir_fd=fd, dst_dir_fd=fd)
        os.symlink("file", "symlink", dir_fd=fd)
        os.mkfifo("fifo", 0o600, dir_fd=fd)
        os.mknod("chr", stat.S_IFCHR | 0o600, os.makedev(1, 3), dir_fd=fd)
        os.mkdir("sub", 0o700, dir_fd=fd)
        os.mkdir("gone", dir_fd=fd)
        os.rmdir("gone", dir_fd=fd)
        os.close(os.open("unlinked", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
        os.unlink("unlinked", dir_fd=fd)
        return _shown(fd)
    finally:
        os.close(fd)


def look(root: Path) -> dict:
    fd = _walk(root, create=False)
    try:
        return _shown(fd)
    finally:
        os.close(fd)


def remove(root: Path) -> None:
    fd = _walk(root, create=False)
    try:
        for name in os.listdir(fd):
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    for depth in range(DEPTH, 0, -1):
        parent = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(depth - 1):
            nxt = os.open(PART, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
            os.close(parent)
            parent = nxt
        try:
            os.rmdir(PART, dir_fd=parent)
        finally:
            os.close(parent)


def test_entries_past_path_max_work_as_on_the_kernel_overlay(scratch):
    pair = OverlayPair(scratch, [{b"lower": File(b"l")}])
    with pair.mounted():
        built = pair.apply(build, "build")
        assert built[0] == "ok", built
        assert pair.apply(look, "look") == built
    # A remount finds the deep entries in the upper dir.
    with pair.mounted():
        assert pair.apply(look, "look after remount") == built
        pair.apply(remove, "remove")
        pair.apply(ops.listdir(""))
        pair.check()
    differences = pair.upper_differences()
    assert not differences, differences
