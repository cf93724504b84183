"""Named file system operations on a mount root, for differential tests.

Each builder returns a callable ``op(root) -> value`` with a readable
``__name__``; values are deterministic (no inode numbers, no times), so the
kernel's and layerfs's outcomes compare equal.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable

Op = Callable[[Path], Any]


def _named(name: str, fn: Op) -> Op:
    fn.__name__ = name  # type: ignore[attr-defined]
    return fn


def _p(root: Path, path: str) -> bytes:
    return os.fsencode(root / path) if path else os.fsencode(root)


def create(path: str, data: bytes = b"", mode: int = 0o644) -> Op:
    def op(root: Path) -> int:
        fd = os.open(_p(root, path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
    return _named(f"create({path!r})", op)


def write(path: str, data: bytes, offset: int = 0) -> Op:
    def op(root: Path) -> int:
        fd = os.open(_p(root, path), os.O_WRONLY | os.O_NONBLOCK)
        try:
            return os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
    return _named(f"write({path!r}, {len(data)}@{offset})", op)


def append(path: str, data: bytes) -> Op:
    def op(root: Path) -> int:
        fd = os.open(_p(root, path), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
    return _named(f"append({path!r})", op)


def overwrite(path: str, data: bytes) -> Op:
    """open(O_TRUNC) and write: copy-up without the old data."""
    def op(root: Path) -> int:
        fd = os.open(_p(root, path), os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)
    return _named(f"overwrite({path!r})", op)


def truncate(path: str, size: int) -> Op:
    return _named(f"truncate({path!r}, {size})", lambda root: os.truncate(_p(root, path), size))


def read(path: str) -> Op:
    """The content of a regular file (others are opened without blocking: a FIFO)."""
    def op(root: Path) -> bytes | str:
        fd = os.open(_p(root, path), os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return stat.filemode(st.st_mode)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    return _named(f"read({path!r})", op)


def listdir(path: str = "") -> Op:
    return _named(f"listdir({path!r})", lambda root: sorted(os.listdir(_p(root, path))))


def lstat(path: str) -> Op:
    def op(root: Path) -> tuple:
        st = os.lstat(_p(root, path))
        nlink = st.st_nlink
        return (stat.filemode(st.st_mode), st.st_uid, st.st_gid,
                st.st_size if not stat.S_ISDIR(st.st_mode) else None, nlink)
    return _named(f"lstat({path!r})", op)


def unlink(path: str) -> Op:
    return _named(f"unlink({path!r})", lambda root: os.unlink(_p(root, path)))


def rmdir(path: str) -> Op:
    return _named(f"rmdir({path!r})", lambda root: os.rmdir(_p(root, path)))


def mkdir(path: str, mode: int = 0o755) -> Op:
    return _named(f"mkdir({path!r})", lambda root: os.mkdir(_p(root, path), mode))


def rename(old: str, new: str) -> Op:
    return _named(f"rename({old!r}, {new!r})",
                  lambda root: os.rename(_p(root, old), _p(root, new)))


def symlink(target: str, path: str) -> Op:
    return _named(f"symlink({target!r}, {path!r})",
                  lambda root: os.symlink(target, _p(root, path)))


def link(existing: str, path: str) -> Op:
    return _named(f"link({existing!r}, {path!r})",
                  lambda root: os.link(_p(root, existing), _p(root, path),
                                       follow_symlinks=False))


def mkfifo(path: str, mode: int = 0o644) -> Op:
    return _named(f"mkfifo({path!r})", lambda root: os.mkfifo(_p(root, path), mode))


def mknod(path: str, kind: int, rdev: int, mode: int = 0o644) -> Op:
    return _named(f"mknod({path!r}, {kind:o}, {rdev})",
                  lambda root: os.mknod(_p(root, path), kind | mode, rdev))


def chmod(path: str, mode: int) -> Op:
    return _named(f"chmod({path!r}, {mode:o})", lambda root: os.chmod(_p(root, path), mode))


def chown(path: str, uid: int, gid: int) -> Op:
    return _named(f"chown({path!r}, {uid}, {gid})",
                  lambda root: os.chown(_p(root, path), uid, gid, follow_symlinks=False))


def utime(path: str, mtime_ns: int) -> Op:
    return _named(f"utime({path!r})",
                  lambda root: os.utime(_p(root, path), ns=(mtime_ns, mtime_ns),
                                        follow_symlinks=False))


def setxattr(path: str, name: bytes, value: bytes) -> Op:
    return _named(f"setxattr({path!r}, {name!r})",
                  lambda root: os.setxattr(_p(root, path), name, value, follow_symlinks=False))


def removexattr(path: str, name: bytes) -> Op:
    return _named(f"removexattr({path!r}, {name!r})",
                  lambda root: os.removexattr(_p(root, path), name, follow_symlinks=False))


def getxattr(path: str, name: bytes) -> Op:
    return _named(f"getxattr({path!r}, {name!r})",
                  lambda root: os.getxattr(_p(root, path), name, follow_symlinks=False))


def listxattr(path: str) -> Op:
    return _named(f"listxattr({path!r})",
                  lambda root: sorted(os.listxattr(_p(root, path), follow_symlinks=False)))


def fsync(path: str) -> Op:
    def op(root: Path) -> None:
        fd = os.open(_p(root, path), os.O_RDWR | os.O_NONBLOCK)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return _named(f"fsync({path!r})", op)


def statvfs_namemax() -> Op:
    return _named("statvfs", lambda root: os.statvfs(_p(root, "")).f_namemax)
