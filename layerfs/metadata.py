"""Metadata stored beside the data: containers-storage's ``override_stat`` xattr.

With ``force_mask``, containers-storage keeps the real owner, mode and file
type of an entry in ``user.containers.override_stat`` =
``"<uid>:<gid>:<octal mode>[:<type>]"`` (FORMATS.md 6.5). Pure parsing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

_TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "pipe": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


@dataclass(frozen=True, slots=True)
class StatOverride:
    uid: int
    gid: int
    mode: int
    """Full st_mode when the type is known, else permission bits only."""
    rdev: int | None = None
    has_type: bool = False

    def apply(self, mode: int, rdev: int) -> tuple[int, int]:
        """The (st_mode, st_rdev) shown for a backing entry with these values."""
        if self.has_type:
            return self.mode, self.rdev if self.rdev is not None else rdev
        return stat.S_IFMT(mode) | stat.S_IMODE(self.mode), rdev


def parse_override_stat(value: bytes) -> StatOverride | None:
    """Parse an override_stat value; None if it is malformed (then it is ignored)."""
    try:
        parts = value.rstrip(b"\0").decode("ascii").split(":")
        if len(parts) not in (3, 4):
            return None
        uid, gid, mode = int(parts[0]), int(parts[1]), int(parts[2], 8)
    except (UnicodeDecodeError, ValueError):
        return None
    if uid < 0 or gid < 0 or mode < 0:
        return None
    if len(parts) == 3:
        return StatOverride(uid, gid, stat.S_IMODE(mode))
    kind = parts[3]
    if kind in _TYPE_BITS:
        return StatOverride(uid, gid, _TYPE_BITS[kind] | stat.S_IMODE(mode), None, True)
    for prefix, bits in (("block-", stat.S_IFBLK), ("char-", stat.S_IFCHR)):
        if kind.startswith(prefix):
            try:
                major, minor = (int(n) for n in kind[len(prefix):].split("-"))
            except ValueError:
                return None
            return StatOverride(uid, gid, bits | stat.S_IMODE(mode), os.makedev(major, minor), True)
    return None
