"""Advisory file locks (flock) for the cache: who unpacks a layer, who uses it.

A lock is held as long as its file descriptor is open, also in a forked
mount daemon, and vanishes with the process, so a killed unpack never
leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os


class FileLock:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.fd: int | None = None

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` return False if someone else holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644) \
            if not shared else os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether someone holds any lock on ``path`` (False if it does not exist)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
