"""Copying one file system object's data and metadata, as copy-up needs it.

Data goes from descriptor to descriptor inside the kernel: a reflink
(FICLONE) where the filesystems share extents, else ``copy_file_range``,
else ``sendfile``; holes stay holes (SEEK_DATA/SEEK_HOLE). Python buffers
are the last resort only. Extended attributes are copied except those that
encode overlay structure (the caller says which).
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Callable

FICLONE = 0x40049409
_CHUNK = 1 << 30  # per copy_file_range/sendfile call; the kernel caps it anyway
_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                              errno.EBADF, errno.ETXTBSY})


# Pairs of filesystems (st_dev of source, destination) that cannot share extents.
_no_reflink: set[tuple[int, int]] = set()
# Below this, looking for holes costs more than copying them.
_HOLE_SEARCH_MIN = 1 << 20


def copy_data(src: int, dst: int, size: int) -> None:
    """Make ``dst`` (empty, writable) hold the first ``size`` bytes of ``src``."""
    if size == 0:
        return
    devices = (os.fstat(src).st_dev, os.fstat(dst).st_dev)
    if devices not in _no_reflink:
        try:
            fcntl.ioctl(dst, FICLONE, src)
            return
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                _no_reflink.add(devices)
    if size < _HOLE_SEARCH_MIN:
        _copy_range(src, dst, 0, size)
        os.ftruncate(dst, size)
        return
    offset = 0
    while offset < size:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            data = offset
            hole = size
        else:
            hole = min(os.lseek(src, data, os.SEEK_HOLE), size)
        if data >= size:
            break
        _copy_range(src, dst, data, hole - data)
        offset = hole
    os.ftruncate(dst, size)


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    end = offset + length
    while offset < end:
        try:
            done = os.copy_file_range(src, dst, min(end - offset, _CHUNK), offset, offset)
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
            _sendfile_range(src, dst, offset, end - offset)
            return
        if done == 0:  # the source shrank under us; copy what there is
            return
        offset += done


def _sendfile_range(src: int, dst: int, offset: int, length: int) -> None:
    os.lseek(dst, offset, os.SEEK_SET)
    end = offset + length
    while offset < end:
        try:
            done = os.sendfile(dst, src, offset, min(end - offset, _CHUNK))
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
            _buffered_range(src, dst, offset, end - offset)
            return
        if done == 0:
            return
        offset += done


def _buffered_range(src: int, dst: int, offset: int, length: int) -> None:
    end = offset + length
    while offset < end:
        chunk = os.pread(src, min(end - offset, 1 << 20), offset)
        if not chunk:
            return
        os.pwrite(dst, chunk, offset)
        offset += len(chunk)


def copy_xattrs(src: bytes, dst: bytes, keep: Callable[[bytes], bool]) -> None:
    """Copy the extended attributes of path ``src`` to path ``dst`` (no symlink followed)
    whose names ``keep`` accepts. Attributes the destination refuses for lack of
    privilege or support (trusted.* as a user, security.* on some filesystems) are
    skipped, as the kernel's copy-up does with unsupported ones."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        bname = os.fsencode(name)
        if not keep(bname):
            continue
        try:
            value = os.getxattr(src, bname, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.EPERM, errno.EACCES, errno.ENOTSUP):
                continue
            raise
        try:
            os.setxattr(dst, bname, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                continue
            raise


def set_xattrs(dst: bytes, xattrs: dict[bytes, bytes]) -> None:
    """Set extended attributes on path ``dst``, skipping those the destination
    refuses for lack of privilege or support."""
    for name, value in xattrs.items():
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                continue
            raise
