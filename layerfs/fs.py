"""The filesystem's operations: a thin translation between FUSE requests and the index.

:class:`LayerOperations` implements :class:`layerfs.fuse.api.Operations`, the
engine-neutral contract: handlers take the inode (and the handle, where the
kernel sent one) and whichever engine runs the mount (:mod:`layerfs.engines`)
turns kernel requests into these calls. This module holds the lifecycle and
the requests that read: attributes, lookups and listings come from
:class:`~layerfs.index.PathIndex`; file data and xattrs are read from the
backing layer, through the descriptors of :class:`~layerfs.openfiles.OpenFiles`
(which follows a file copied up since it was opened). The write requests
are :class:`~layerfs.fswrites.WriteOperations`' (the base class): each one
call of :class:`~layerfs.upper.Upper` when the mount has an upper dir (EROFS
without). No merge or copy-up logic lives here: handlers resolve inodes and
handles, call in, and tell the kernel what changed (through the engine's
:class:`~layerfs.fuse.api.Notifier`). Every handler runs inside
:func:`layerfs.handler.request`, which maps exceptions to errno in one place
(unexpected ones to EIO with a logged traceback). A mount whose layers are
still arriving (:class:`~layerfs.deferred.DeferredIndex`) makes it wait for
the index, in that one place, before any handler that needs it; statfs and
the root's attributes are answered at once.

Read-only mounts on an engine with zero-message opens answer OPEN and
OPENDIR with ENOSYS: the kernel then opens files and directories without
asking and caches their pages and listings, and READ and READDIRPLUS come
with fh 0, served by inode. Listings are the node's names in a fixed order,
so an offset means the same entry every time. Writable mounts keep
OPEN/OPENDIR and let the kernel cache too; every side effect of a change
the kernel did not ask for is invalidated.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

import trio

from .backing import read_if_cached
from .deferred import DeferredIndex
from .fswrites import WriteOperations
from .fuse.api import (
    ROOT_INODE,
    AddDirEntry,
    Attributes,
    Context,
    Entry,
    FsStats,
    FUSEError,
    Notifier,
    Opened,
)
from .handler import request as _request
from .idmap import IDENTITY, IdMap
from .index import Node, PathIndex
from .openfiles import DEFAULT_CACHED, OpenFile, OpenFiles
from .readahead import ListingReadahead
from .upper import Upper

# Layers never change behind the kernel's back: let it cache for long.
CACHE_TIMEOUT = 3600.0

# readdir offsets: 1 and 2 are "." and "..", children start at 3.
_FIRST_CHILD_OFFSET = 3

# setxattr(2) flags.
_XATTR_CREATE = 1
_XATTR_REPLACE = 2

@dataclass(slots=True)
class OpenDir:
    node: Node
    names: list[bytes]
    """The listing as it was at the last rewind: offsets index into it."""


class _NoKernel:
    """The notifier until an engine gives one (and in tests that call handlers directly)."""

    def invalidate_inode(self, ino: int, *, attr_only: bool = False) -> None:
        pass

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        pass


class LayerOperations(WriteOperations):
    """FUSE view of a :class:`PathIndex`, writable through an :class:`Upper`.

    ``zero_message_opens``: the engine can let the kernel open without asking
    (then a read-only mount answers OPEN/OPENDIR with ENOSYS). ``after_init``
    runs once the kernel accepted the connection. ``cached_files``: how many
    backing descriptors to keep for reads by inode."""

    def __init__(self, index: PathIndex | DeferredIndex, *, debug: bool = False,
                 upper: Upper | None = None,
                 after_init: Callable[[], None] | None = None,
                 zero_message_opens: bool = False,
                 cached_files: int = DEFAULT_CACHED, ids: IdMap = IDENTITY,
                 xattrs: str = "auto") -> None:
        self.ids = ids  # idmap: stored owners <-> shown owners (layerfs/idmap.py)
        self.xattrs = xattrs
        """-o xattrs=: ``off`` makes every xattr request ENOSYS (the kernel stops asking);
        ``auto`` does so for GETXATTR once :attr:`image_without_xattrs` is set."""
        self.image_without_xattrs = False
        """Set by the mount (``auto``, read-only) once no layer is known to hold xattrs."""
        self._after_init = after_init
        self._deferred: DeferredIndex | None = None
        """Until the layers are all present: the index to wait for."""
        if isinstance(index, DeferredIndex):
            self._deferred = index
            self.index: PathIndex = None  # type: ignore[assignment]  # set once ready
        else:
            self.index = index
        self.debug = debug
        self.upper = upper
        self.zero_message_opens = zero_message_opens and upper is None
        """Whether OPEN and OPENDIR are answered ENOSYS (read-only mounts only)."""
        self.notifier: Notifier = _NoKernel()
        self._files = OpenFiles(cached_files)
        self._readahead: ListingReadahead | None = None
        """Warms the files a cold walk reads next (not for lazily fetched layers)."""
        self._dirs: dict[int, OpenDir] = {}
        self._lookups: Counter[int] = Counter()
        self._stale: set[int] = set()
        """Upper inodes written since their attributes were last read."""
        self._write_lock: trio.Lock | None = None
        self._name_max = 255
        """The longest name every layer can hold (the kernel overlay's namelen)."""
        self.last_request = time.monotonic()
        """When the latest request came (background work waits for a quiet spell)."""

    # -- lifecycle -------------------------------------------------------------

    def init(self, notifier: Notifier) -> None:
        # The engine calls this once the kernel took its INIT answer (which
        # resets the mount's read-ahead: after_init tunes it).
        self.notifier = notifier
        if self._after_init is not None:
            self._after_init()

    def open_layers(self) -> None:
        """Hold each layer's root open: backing files are opened beneath it."""
        if self._deferred is not None:
            return  # once the index is ready
        self._files.open_layers(self.index)
        if not self._files.fetching:
            self._readahead = ListingReadahead(self.index, self._files.layer_roots)
        self._name_max = min(os.statvfs(fd).f_namemax for fd in self._files.layer_roots)

    def close_layers(self) -> None:
        if self._readahead is not None:
            self._readahead.close()
        self._files.close()

    # -- a mount whose layers are still arriving ---------------------------------

    def _answers_early(self, name: str, args: tuple) -> bool:
        """Requests answered before the index is ready: they must not hang (mount(8),
        df and the mountpoint's own stat ask them)."""
        return (name == "statfs" or name == "getattr" and args[0] == ROOT_INODE
                or self.zero_message_opens and name in ("open", "opendir"))

    async def until_ready(self) -> None:
        """Wait for a deferred index and take it over (nothing to wait for without one)."""
        if self._deferred is None:
            return
        index = await self._deferred.ready()
        if self._deferred is not None:  # the first request to wake up takes it over
            self._deferred = None
            self.index = index
            self.open_layers()
            # The kernel saw the provisional root: let it ask again.
            self.notifier.invalidate_inode(ROOT_INODE)

    @staticmethod
    def _provisional_root() -> Entry:
        """The root's attributes until the index is ready, not to be cached."""
        now = time.time_ns()
        return Entry(Attributes(ino=ROOT_INODE, mode=stat.S_IFDIR | 0o755, nlink=2, uid=0,
                                gid=0, rdev=0, size=0, blocks=0, atime_ns=now, mtime_ns=now,
                                ctime_ns=now),
                     entry_timeout=0, attr_timeout=0)

    # -- helpers ---------------------------------------------------------------

    def _node(self, inode: int) -> Node:
        node = self.index.get(inode)
        if node is None:
            raise FUSEError(errno.ENOENT)
        return node

    def _remember(self, node: Node) -> None:
        """The kernel now holds one more reference to ``node`` (lookup count)."""
        if self.upper is not None:
            self._lookups[node.ino] += 1

    def _fresh(self, node: Node, *, always: bool = False) -> Node:
        """``node`` with up-to-date attributes: an upper file may have been written."""
        if self.upper is None or not self.index.is_upper(node) \
                and node.ino not in self.index.tree.indexed:  # a lower name shows the upper inode
            return node
        if not always and node.ino not in self._stale:
            return node
        self._stale.discard(node.ino)
        if self.index.is_attached(node):
            self.upper.refresh(node)
        else:
            fd = self._files.upper_fd(node)
            if fd is not None:
                self.index.set_stat(node, os.fstat(fd))
        return node

    def _entry(self, node: Node) -> Entry:
        self._remember(node)
        return self._attributes(node)

    def _attributes(self, node: Node) -> Entry:
        return Entry(Attributes(ino=node.ino, mode=node.mode, nlink=node.shown_nlink,
                                uid=self.ids.shown_uid(node.uid),  # idmap: what stat shows and
                                gid=self.ids.shown_gid(node.gid),  # default_permissions checks
                                rdev=node.rdev, size=node.size,
                                blocks=node.blocks, atime_ns=node.atime_ns,
                                mtime_ns=node.mtime_ns, ctime_ns=node.ctime_ns),
                     entry_timeout=CACHE_TIMEOUT, attr_timeout=CACHE_TIMEOUT)

    # -- metadata --------------------------------------------------------------

    @_request
    async def lookup(self, parent: int, name: bytes, ctx: Context) -> Entry:
        directory = self._node(parent)
        if len(name) > self._name_max:
            # FUSE passes longer names on; no layer could hold one (as the kernel overlay says).
            raise FUSEError(errno.ENAMETOOLONG)
        if name == b".":
            node: Node | None = directory
        elif name == b"..":
            node = directory.parent or directory
        else:
            node = self.index.lookup(directory, name)
        if node is None:
            raise FUSEError(errno.ENOENT)
        return self._entry(self._fresh(node))

    @_request
    async def getattr(self, ino: int, ctx: Context) -> Entry:
        if self._deferred is not None:
            return self._provisional_root()
        return self._attributes(self._fresh(self._node(ino), always=True))

    @_request
    async def readlink(self, ino: int, ctx: Context) -> bytes:
        node = self._node(ino)
        if not stat.S_ISLNK(node.mode):
            raise FUSEError(errno.EINVAL)
        return self.index.read_link(node)

    async def forget(self, inodes: Iterable[tuple[int, int]]) -> None:
        # Nodes with a name live as long as the mount; a removed one goes when
        # the kernel forgets it. A read-only mount counts no lookups: the
        # kernel sends FORGET when it drops an inode.
        for ino, count in inodes:
            if self.upper is not None:
                left = self._lookups[ino] - count
                if left > 0:
                    self._lookups[ino] = left
                    continue
                self._lookups.pop(ino, None)
                self._stale.discard(ino)
                self.index.forget(ino)
            self._files.forget(ino)

    @_request
    async def statfs(self, ino: int, ctx: Context) -> FsStats:
        st = os.statvfs(self._deferred.statfs_path if self._deferred is not None
                        else self.index.layers[-1].root)
        return FsStats(bsize=st.f_bsize, frsize=st.f_frsize, blocks=st.f_blocks,
                       bfree=st.f_bfree, bavail=st.f_bavail, files=st.f_files,
                       ffree=st.f_ffree, namemax=self._name_max)

    # -- xattrs ----------------------------------------------------------------

    @_request
    async def getxattr(self, ino: int, name: bytes, ctx: Context) -> bytes:
        self._xattrs_served(name)
        return self.index.get_xattr(self._node(ino), name)

    @_request
    async def listxattr(self, ino: int, ctx: Context) -> list[bytes]:
        self._xattrs_served()
        return self.index.list_xattrs(self._node(ino))

    def _xattrs_served(self, name: bytes | None = None) -> None:
        # ENOSYS: the kernel then answers EOPNOTSUPP itself, with no round trip again
        # (GETXATTR and LISTXATTR each once for the whole connection). Under auto only
        # GETXATTR, the one `ls -l` sends per entry, and never for a name of layerfs's
        # own (user.layerfs.*: answered until some other name switches them all off).
        if self.xattrs == "off" or (self.image_without_xattrs and name is not None
                                    and not name.startswith(b"user.layerfs.")):
            raise FUSEError(errno.ENOSYS)

    # -- directories -----------------------------------------------------------

    @_request
    async def opendir(self, ino: int, ctx: Context) -> Opened:
        if self.zero_message_opens:
            # The kernel opens directories without asking from now on, and
            # caches their listings.
            raise FUSEError(errno.ENOSYS)
        node = self._node(ino)
        if not node.is_dir:
            raise FUSEError(errno.ENOTDIR)
        fh = self._files.number()
        self._dirs[fh] = OpenDir(node, node.listing())
        return Opened(fh, keep_cache=True, cache_dir=True)

    @_request
    async def readdir(self, ino: int, fh: int, offset: int, plus: bool,
                      add: AddDirEntry) -> None:
        opened = self._dirs[fh] if fh else None
        node = opened.node if opened is not None else self._node(ino)
        children = node.children
        if children is None:
            raise FUSEError(errno.ENOTDIR)
        if opened is not None:
            if offset == 0:
                # A rewind sees the changes made since (as the kernel overlay does).
                opened.names = node.listing()
            names = opened.names
        else:
            # Opened without asking: the node's listing, the same at every call
            # while nothing changes it, so the kernel's cached pages stay valid.
            names = node.listing()
        if offset < 1:
            if not add(b".", self._attributes(node), 1):
                return
        if offset < 2:
            if not add(b"..", self._attributes(node.parent or node), 2):
                return
        for position in range(max(offset - _FIRST_CHILD_OFFSET + 1, 0), len(names)):
            child = children.get(names[position])
            if child is None:
                continue  # removed since the listing was taken
            if not add(child.name, self._attributes(self._fresh(child)),
                       position + _FIRST_CHILD_OFFSET):
                return
            if plus:
                self._remember(child)

    @_request
    async def releasedir(self, ino: int, fh: int) -> None:
        self._dirs.pop(fh, None)

    @_request
    async def fsyncdir(self, ino: int, fh: int, datasync: bool) -> None:
        opened = self._dirs.get(fh)
        node = opened.node if opened is not None else self.index.get(ino)
        if self.upper is None or node is None or not self.index.is_upper(node):
            return None
        upper = self.upper
        if self.index.is_attached(node):
            await trio.to_thread.run_sync(
                lambda: upper.disk.fsync_path(node.path(), datasync=datasync))

    # -- files -----------------------------------------------------------------

    async def _open_for_reading(self, node: Node) -> OpenFile:
        if self._files.fetching:
            # Its data may first have to come over the network: not on the event loop.
            return await trio.to_thread.run_sync(self._files.open_backing, node)
        # The index already stat'ed this file at mount: opening it is a
        # short, cached path walk, cheaper inline than a thread hop.
        return self._files.open_backing(node)

    async def _reader(self, ino: int, fh: int) -> OpenFile:
        """The open file that serves reads of ``ino``: handle ``fh``'s, or for
        fh 0 (opened without asking) a cached descriptor by inode. Either is on
        the file the node shows now (the table follows a copy-up)."""
        if fh:
            handle = self._files.get(fh)
            if handle is None:
                raise FUSEError(errno.EBADF)
            return handle
        cached = self._files.cached(ino)
        if cached is None:
            cached = await self._open_for_reading(self._node(ino))
            self._files.cache(cached)
        return cached

    @_request
    async def open(self, ino: int, flags: int, ctx: Context) -> Opened:
        if self.zero_message_opens:
            # The kernel opens files without asking from now on (and keeps
            # their pages): reads come with fh 0.
            raise FUSEError(errno.ENOSYS)
        node = self._node(ino)
        writing = Upper.opens_for_write(flags)
        if writing:
            upper = self._writable()
            fd = await self._change(upper.open_for_write, node, flags,
                                    slow=not flags & os.O_TRUNC and upper.needs_data_copy(node))
            if flags & os.O_TRUNC:
                self._stale.add(node.ino)
            opened = OpenFile(node, fd, node.layer, True)
        else:
            opened = await self._open_for_reading(node)
        fh = self._files.add(opened)
        # A file only read has nothing to flush on close.
        return Opened(fh, keep_cache=True, noflush=not writing)

    @_request
    async def read(self, ino: int, fh: int, offset: int, size: int) -> bytes | memoryview:
        handle = await self._reader(ino, fh)
        # Cached data is served inline; only a read that needs the disk pays
        # for a worker thread (and does not stall other requests).
        # A lower layer's file cannot change: its size says where it ends.
        end = None if handle.layer == self.index.upper else handle.node.size
        cached = read_if_cached(handle.fd, size, offset, end)
        if offset == 0 and end is not None and self._readahead is not None:
            self._readahead.first_read(handle.node, missed=cached is None)
        if cached is not None:
            return cached
        return await trio.to_thread.run_sync(os.pread, handle.fd, size, offset)

    @_request
    async def release(self, ino: int, fh: int) -> None:
        self._files.release(fh)

    async def flush(self, ino: int, fh: int) -> None:
        if self.upper is None:
            # Read-only: nothing to do on close(2). ENOSYS tells the kernel to
            # stop sending FLUSH at all, saving a round trip on every close.
            raise FUSEError(errno.ENOSYS)
        # With an upper the kernel drops its cached attributes after a flush,
        # so a file written through another name shows its new size.
        return None

    @_request
    async def lseek(self, ino: int, fh: int, offset: int, whence: int) -> int:
        # The kernel asks only for SEEK_DATA and SEEK_HOLE: the backing file knows.
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise FUSEError(errno.EINVAL)
        handle = await self._reader(ino, fh)
        return os.lseek(handle.fd, offset, whence)

    @_request
    async def setxattr(self, ino: int, name: bytes, value: bytes, flags: int,
                       ctx: Context) -> None:
        self._xattrs_served()
        upper = self._writable()
        node = self._node(ino)
        if flags & (_XATTR_CREATE | _XATTR_REPLACE):
            try:
                self.index.get_xattr(node, name)
                present = True
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
                present = False
            if flags & _XATTR_CREATE and present:
                raise FUSEError(errno.EEXIST)
            if flags & _XATTR_REPLACE and not present:
                raise FUSEError(errno.ENODATA)
        await self._change(upper.setxattr, node, name, value, slow=upper.needs_data_copy(node))

    @_request
    async def removexattr(self, ino: int, name: bytes, ctx: Context) -> None:
        self._xattrs_served()
        upper = self._writable()
        node = self._node(ino)
        await self._change(upper.removexattr, node, name, slow=upper.needs_data_copy(node))
