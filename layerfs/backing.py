"""Opening and reading files inside a layer without ever leaving it.

A layer may hold symlinks pointing anywhere (``etc -> /``); the daemon must
never follow one when it resolves a backing path. Files are opened with
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` relative to the layer's
root, falling back to a component-by-component ``O_NOFOLLOW`` walk where
openat2 is unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from .errors import LayerError
from .libc import libc

if TYPE_CHECKING:
    from .layer import Layer

log = logging.getLogger(__name__)

# A backing entry the index knows is gone or was replaced by a symlink: the
# layer changed under the mount (layers must not), an I/O error for the user.
_VANISHED = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.ESTALE})

_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

_have_openat2: bool | None = None


def _openat2(dirfd: int, path: bytes, flags: int) -> int:
    how = struct.pack("QQQ", flags, 0, _RESOLVE)
    fd = libc.syscall(_SYS_OPENAT2, dirfd, path, how, len(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return fd


def _open_by_walk(dirfd: int, path: bytes, flags: int) -> int:
    parts = [p for p in path.split(b"/") if p]
    if any(p == b".." for p in parts):
        raise OSError(errno.EXDEV, "path leaves the layer", os.fsdecode(path))
    current = os.dup(dirfd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=current)
            os.close(current)
            current = nxt
        return os.open(parts[-1] if parts else b".", flags | os.O_NOFOLLOW, dir_fd=current)
    finally:
        os.close(current)


# A relative path this long or longer is opened in pieces (the kernel takes
# PATH_MAX bytes, its NUL included, per call).
_PIECE = 2048


def open_beneath(dirfd: int, path: bytes, flags: int) -> int:
    """Open ``path`` relative to ``dirfd`` without following any symlink or leaving it."""
    if len(path) >= _PIECE:
        # Past PATH_MAX below the mount root: open its dirs a piece at a time.
        cut = path.rindex(b"/", 0, _PIECE)
        head = open_beneath(dirfd, path[:cut], os.O_PATH | os.O_DIRECTORY)
        try:
            return open_beneath(head, path[cut + 1:], flags)
        finally:
            os.close(head)
    global _have_openat2
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    if _have_openat2 is not False:
        try:
            return _openat2(dirfd, path or b".", flags)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    return _open_by_walk(dirfd, path, flags)


def open_for_reading(dirfd: int, path: bytes) -> int:
    """Open a backing file read-only, without updating its atime where we may."""
    try:
        return open_beneath(dirfd, path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:
        # O_NOATIME needs ownership or CAP_FOWNER.
        return open_beneath(dirfd, path, os.O_RDONLY)


@contextmanager
def backing_io(layer: "Layer", relpath: bytes) -> Iterator[None]:
    """Report a backing entry that vanished or turned into a symlink as EIO, naming it."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _VANISHED:
            raise
        where = os.fsdecode(layer.path_of(relpath))
        log.warning("%s: layer %s changed under the mount: %s", where, layer.describe(),
                    exc.strerror)
        raise LayerError(f"{where}: layer {layer.describe()} changed under the mount: "
                         f"{exc.strerror}", errno.EIO) from exc


_nowait_supported = hasattr(os, "RWF_NOWAIT")


def read_if_cached(fd: int, size: int, offset: int, end: int | None = None) -> memoryview | None:
    """Read from the page cache without blocking: the data, or None if any of it
    would need the disk (then the caller reads in a worker thread).

    A FUSE short read means end of file, so a short read counts only when it
    reaches ``end``, the file's size if the caller knows it cannot change (a
    lower layer's file); else the caller falls back and gets the short read."""
    global _nowait_supported
    if not _nowait_supported:
        return None
    buffer = bytearray(size)
    try:
        count = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            _nowait_supported = False  # the backing filesystem cannot say
            log.info("reads without blocking are not supported here (%s): every read "
                     "goes through a worker thread", exc.strerror)
            return None
        raise
    if count == size or end is not None and offset + count == end:
        return memoryview(buffer)[:count]
    return None
