"""The ctime an operation reports is the file's: re-reading it from the
filesystem (statx with AT_STATX_FORCE_SYNC, which makes FUSE ask the daemon)
gives the same, with nothing changed in between -- as on the kernel overlay.

layerfs records some inode numbers in an xattr after creating an entry; the
ctime it reported had to include that write (else pjdfstest's truncate/00.t
"unsuccessful truncate does not update ctime" failed when the two fell in
different seconds).
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

import pytest

from tests.support.layerspec import File
from tests.support.overlaypair import OverlayPair

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay")

_libc = ctypes.CDLL(None, use_errno=True)
_AT_STATX_FORCE_SYNC = 0x2000
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BASIC_STATS = 0x7FF
_CTIME_OFFSET = 0x60  # struct statx: stx_ctime (tv_sec s64, tv_nsec u32)


def synced_ctime_ns(path: Path) -> int:
    buffer = ctypes.create_string_buffer(256)
    if _libc.statx(-100, os.fsencode(path), _AT_STATX_FORCE_SYNC | _AT_SYMLINK_NOFOLLOW,
                   _STATX_BASIC_STATS, buffer) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    seconds, nanoseconds = struct.unpack_from("qI", buffer, _CTIME_OFFSET)
    return seconds * 10**9 + nanoseconds


def steady(path: Path) -> bool:
    return os.lstat(path).st_ctime_ns == synced_ctime_ns(path)


def create_over_open_unlinked(root: Path) -> list[bool]:
    """A name made again while its old file is still open (the old one keeps
    the inode number the path would give)."""
    path = root / "f"
    held = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.unlink(path)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        return [steady(path)]
    finally:
        os.close(held)


def link_and_rename(root: Path) -> list[bool]:
    os.link(root / "lower", root / "second")
    seen = [steady(root / "lower"), steady(root / "second")]
    os.rename(root / "second", root / "moved")
    seen.append(steady(root / "moved"))
    os.close(os.open(root / "new", os.O_CREAT | os.O_WRONLY, 0o644))
    os.rename(root / "new", root / "renamed")
    seen.append(steady(root / "renamed"))
    return seen


def test_reported_ctime_is_the_files(scratch):
    pair = OverlayPair(scratch, [{b"lower": File(b"l")}])
    with pair.mounted():
        assert pair.apply(create_over_open_unlinked) == ("ok", [True])
        assert pair.apply(link_and_rename) == ("ok", [True] * 4)
