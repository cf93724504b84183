"""The contract between the filesystem and a FUSE engine.

:mod:`layerfs.fs` implements :class:`Operations`; an engine turns the
kernel's requests into calls of it and its results into replies. Two
engines exist: the native one (:mod:`layerfs.fuse`, speaking the protocol of
``<linux/fuse.h>`` on ``/dev/fuse`` itself) and an adapter over pyfuse3.
Everything here is plain data: no engine is imported.

Handlers take the inode (and the handle, where the kernel sent one). A
handle is 0 when the kernel never sent OPEN/OPENDIR for it: with
"zero-message opens" (the filesystem answered OPEN or OPENDIR with ENOSYS)
the kernel opens files and directories without asking, and READ, READDIR
and the rest arrive with fh 0 for the filesystem to serve by inode.

Errors are raised as :class:`FUSEError` with an errno; the engine answers
the request with it. Anything else a handler raises is a bug the engine
logs and answers EIO.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

ROOT_INODE = 1

# rename(2) flags, as the kernel sends them in RENAME2.
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2


class FUSEError(Exception):
    """Answer the request with ``errno`` (a positive errno value)."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno

    def __str__(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


@dataclass(slots=True)
class Attributes:
    """What stat(2) shows of an inode."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blksize: int = 4096


@dataclass(slots=True)
class Entry:
    """A looked-up name: its inode's attributes and how long the kernel may cache them.

    Returning an Entry from lookup, create, mkdir, mknod, symlink, link (or
    in a READDIRPLUS listing) gives the kernel one more reference to the
    inode, taken back by FORGET."""

    attributes: Attributes
    entry_timeout: float
    attr_timeout: float
    generation: int = 0


@dataclass(slots=True, frozen=True)
class Context:
    """Who sent a request."""

    uid: int
    gid: int
    pid: int
    umask: int = 0


@dataclass(slots=True)
class Opened:
    """The answer to OPEN, OPENDIR and CREATE: a handle and the kernel's caching."""

    fh: int
    keep_cache: bool = False
    """Keep the inode's cached pages (or listing) across opens."""
    direct_io: bool = False
    cache_dir: bool = False
    """OPENDIR only: the kernel may cache the listing (needs keep_cache too on 6.12+)."""
    noflush: bool = False
    """The kernel need not send FLUSH on close."""
    nonseekable: bool = False
    backing_fd: int | None = None
    """OPEN and CREATE only: a descriptor of the file holding the data, for the
    kernel to read and write directly (FUSE passthrough, root and kernel 6.9+
    only; ignored where the engine cannot). The engine registers it with the
    kernel while it answers; the descriptor stays the filesystem's to close.
    The kernel then ignores keep_cache, and fails with EIO an open of an inode
    that is open both ways at once: give one on every open of an inode or on none."""


@dataclass(slots=True)
class AttrChanges:
    """SETATTR: the fields to change, None for those left alone. "now" times
    are resolved by the engine to the current time."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None


@dataclass(slots=True)
class FsStats:
    """statfs(2)."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    namemax: int


AddDirEntry = Callable[[bytes, Entry, int], bool]
"""``add(name, entry, next_offset)``: queue one entry of a listing. False when
the reply is full: the entry was not sent, stop there. ``next_offset`` is the
offset the kernel will pass to continue after this entry."""


class Notifier(Protocol):
    """What an engine lets the filesystem tell the kernel (best effort: an
    inode or name the kernel does not hold is not an error)."""

    def invalidate_inode(self, ino: int, *, attr_only: bool = False) -> None:
        """Drop the kernel's cached attributes (and, unless attr_only, data and listing)."""

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        """Drop the kernel's cached lookup of ``name`` in ``parent``."""


class Operations(Protocol):
    """The filesystem as an engine sees it. Every method is a coroutine but
    ``readdir``'s ``add`` callback and :meth:`init`."""

    def init(self, notifier: Notifier) -> None:
        """The kernel accepted the connection; ``notifier`` reaches it from now on."""

    async def lookup(self, parent: int, name: bytes, ctx: Context) -> Entry: ...
    async def forget(self, inodes: Iterable[tuple[int, int]]) -> None: ...
    async def getattr(self, ino: int, ctx: Context) -> Entry: ...
    async def setattr(self, ino: int, changes: AttrChanges, fh: int | None,
                      ctx: Context) -> Entry: ...
    async def readlink(self, ino: int, ctx: Context) -> bytes: ...
    async def statfs(self, ino: int, ctx: Context) -> FsStats: ...

    async def getxattr(self, ino: int, name: bytes, ctx: Context) -> bytes: ...
    async def listxattr(self, ino: int, ctx: Context) -> list[bytes]: ...
    async def setxattr(self, ino: int, name: bytes, value: bytes, flags: int,
                       ctx: Context) -> None: ...
    async def removexattr(self, ino: int, name: bytes, ctx: Context) -> None: ...

    async def opendir(self, ino: int, ctx: Context) -> Opened: ...
    async def readdir(self, ino: int, fh: int, offset: int, plus: bool,
                      add: AddDirEntry) -> None:
        """List from ``offset`` (0: the start). With ``plus`` each entry sent
        counts as a lookup (READDIRPLUS); without, only name, inode and type go."""
    async def releasedir(self, ino: int, fh: int) -> None: ...
    async def fsyncdir(self, ino: int, fh: int, datasync: bool) -> None: ...

    async def open(self, ino: int, flags: int, ctx: Context) -> Opened: ...
    async def read(self, ino: int, fh: int, offset: int, size: int) -> bytes | memoryview: ...
    async def write(self, ino: int, fh: int, offset: int, data: bytes | memoryview) -> int: ...
    async def flush(self, ino: int, fh: int) -> None: ...
    async def release(self, ino: int, fh: int) -> None: ...
    async def fsync(self, ino: int, fh: int, datasync: bool) -> None: ...
    async def fallocate(self, ino: int, fh: int, offset: int, length: int, mode: int) -> None: ...
    async def lseek(self, ino: int, fh: int, offset: int, whence: int) -> int: ...
    async def copy_file_range(self, ino_in: int, fh_in: int, offset_in: int, ino_out: int,
                              fh_out: int, offset_out: int, length: int, flags: int) -> int: ...

    async def create(self, parent: int, name: bytes, mode: int, flags: int,
                     ctx: Context) -> tuple[Opened, Entry]: ...
    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Context) -> Entry: ...
    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int,
                    ctx: Context) -> Entry: ...
    async def symlink(self, parent: int, name: bytes, target: bytes, ctx: Context) -> Entry: ...
    async def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Context) -> Entry: ...
    async def unlink(self, parent: int, name: bytes, ctx: Context) -> None: ...
    async def rmdir(self, parent: int, name: bytes, ctx: Context) -> None: ...
    async def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes,
                     flags: int, ctx: Context) -> None: ...
