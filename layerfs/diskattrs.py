"""The metadata syscalls on one object of the upper dir: owner, mode, size, times.

:class:`~layerfs.upperdir.UpperDir` calls these when it builds an object in
the work dir (the final owner, mode and times before it is renamed into
place) and when a change sets attributes of an object in place. They know
nothing of overlays or of the merged view: which attributes to set is
:mod:`layerfs.upper`'s rule (a symlink's mode, for one, never changes).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass

from .libc import libc


@dataclass(frozen=True, slots=True)
class Attributes:
    """The metadata an object gets in the upper dir."""

    mode: int
    """File type and permission bits."""
    uid: int
    gid: int
    rdev: int = 0
    atime_ns: int | None = None
    mtime_ns: int | None = None
    """Times to set; None leaves the creation time."""


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2), mode flags and all (os.posix_fallocate has no mode)."""
    if libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def give_owner(path: bytes, attrs: Attributes) -> None:
    """chown a newly built object, as far as this daemon may."""
    try:
        os.chown(path, attrs.uid, attrs.gid, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        # A user's daemon owns what it creates; other owners cannot be kept.
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # rootless: an id this user namespace does not map (its overflow id
        # inside) cannot be given; the copy stays the namespace root's.


def give_mode_and_times(path: bytes, attrs: Attributes) -> None:
    """chmod and utime a newly built object (after chown, which clears set-id bits)."""
    if not stat.S_ISLNK(attrs.mode):
        os.chmod(path, stat.S_IMODE(attrs.mode))
    if attrs.mtime_ns is not None:
        atime = attrs.atime_ns if attrs.atime_ns is not None else attrs.mtime_ns
        os.utime(path, ns=(atime, attrs.mtime_ns), follow_symlinks=False)


def change(where: bytes | int, *, mode: int | None = None, uid: int | None = None,
           gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
           mtime_ns: int | None = None) -> os.stat_result:
    """Set what is given of an existing object -- at path ``where`` (never
    following a symlink) or through descriptor ``where`` -- in the order
    setattr(2) callers expect: size, owner (which clears set-id bits), mode,
    times. Returns its stat after."""
    by_path = isinstance(where, bytes)
    nofollow = {"follow_symlinks": False} if by_path else {}

    def status() -> os.stat_result:
        return os.lstat(where) if by_path else os.fstat(where)

    if size is not None:
        if by_path:
            fd = os.open(where, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        else:
            os.ftruncate(where, size)
    if uid is not None or gid is not None:
        os.chown(where, -1 if uid is None else uid, -1 if gid is None else gid, **nofollow)
    if mode is not None:
        os.chmod(where, stat.S_IMODE(mode))
    if atime_ns is not None or mtime_ns is not None:
        st = status()
        times = (st.st_atime_ns if atime_ns is None else atime_ns,
                 st.st_mtime_ns if mtime_ns is None else mtime_ns)
        os.utime(where, ns=times, **nofollow)
    return status()
