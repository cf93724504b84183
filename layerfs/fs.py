"""The filesystem's operations: a thin translation between FUSE requests and the index.

:class:`LayerOperations` implements :class:`layerfs.fuse.api.Operations`, the
engine-neutral contract: handlers take the inode (and the handle, where the
kernel sent one) and whichever engine runs the mount (:mod:`layerfs.engines`)
turns kernel requests into these calls. Attributes, lookups and listings
come from :class:`~layerfs.index.PathIndex`; file data and xattrs are read
from the backing layer, through the descriptors of
:class:`~layerfs.openfiles.OpenFiles`. Write requests go to
:class:`~layerfs.upper.Upper` when the mount has an upper dir (EROFS
without). No merge or copy-up logic lives here: handlers resolve inodes and
handles, call in, and tell the kernel what changed (through the engine's
:class:`~layerfs.fuse.api.Notifier`). Every handler runs inside
:func:`_request`, which maps exceptions to errno in one place (unexpected
ones to EIO with a logged traceback). A mount whose layers are still
arriving (:class:`~layerfs.deferred.DeferredIndex`) makes :func:`_request`
wait for the index, in that one place, before any handler that needs it;
statfs and the root's attributes are answered at once.

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
import functools
import logging
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import trio

from .backing import backing_io, open_for_reading, read_if_cached
from .deferred import DeferredIndex
from .errors import LayerfsError, errno_for
from .fuse import api
from .fuse.api import (
    ROOT_INODE,
    AddDirEntry,
    AttrChanges,
    Attributes,
    Context,
    Entry,
    FsStats,
    FUSEError,
    Notifier,
    Opened,
)
from .idmap import IDENTITY, IdMap
from .index import Node, PathIndex
from .openfiles import DEFAULT_CACHED, OpenFile, OpenFiles
from .upper import Caller, Upper
from .upperdir import RENAME_EXCHANGE, RENAME_NOREPLACE

log = logging.getLogger(__name__)

# Layers never change behind the kernel's back: let it cache for long.
CACHE_TIMEOUT = 3600.0

# Writes up to this size are done on the event loop, bigger ones in a thread.
_INLINE_WRITE_BYTES = 1 << 20

# A copy_file_range reply counts its bytes in 32 bits: copy at most this much at once.
_COPY_CHUNK = 1 << 30

# readdir offsets: 1 and 2 are "." and "..", children start at 3.
_FIRST_CHILD_OFFSET = 3

# setxattr(2) flags.
_XATTR_CREATE = 1
_XATTR_REPLACE = 2

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _request(handler: F) -> F:
    """Log the request under --debug and turn any exception into a FUSE errno."""
    name = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: "LayerOperations", *args: Any) -> Any:
        self.last_request = time.monotonic()
        if self.debug:
            log.debug("%s%r", name, _shown_args(args))
        try:
            if self._deferred is not None and not self._answers_early(name, args):
                await self.until_ready()
            return await handler(self, *args)
        except FUSEError:
            raise
        except (OSError, LayerfsError) as exc:
            if self.debug:
                log.debug("%s failed: %s", name, exc)
            raise FUSEError(errno_for(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a bug must fail one request, not the daemon
            log.exception("unexpected error in %s%r", name, args)
            raise FUSEError(errno_for(exc)) from None

    return wrapper  # type: ignore[return-value]


def _shown_args(args: tuple) -> tuple:
    """A request's arguments for the debug log: without the context, data abridged."""
    if args and isinstance(args[-1], Context):
        args = args[:-1]
    return tuple(f"<{len(arg)} bytes>" if isinstance(arg, (bytes, memoryview)) and len(arg) > 64
                 else arg for arg in args)


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


class LayerOperations:
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
        self._fetching = False
        """Whether some layer fetches file data on first open (a lazy registry layer)."""
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
        self._layer_fds: list[int] = []
        self._files = OpenFiles(cached_files)
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
        self._fetching = any(layer.fetches_content for layer in self.index.layers)
        for layer in self.index.layers:
            self._layer_fds.append(
                os.open(layer.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        self._name_max = min(os.statvfs(fd).f_namemax for fd in self._layer_fds)

    def close_layers(self) -> None:
        self._files.close()
        for fd in self._layer_fds:
            os.close(fd)
        self._layer_fds.clear()

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
        if self.upper is None or not self.index.is_upper(node):
            return node
        if not always and node.ino not in self._stale:
            return node
        self._stale.discard(node.ino)
        if self.index.is_attached(node):
            self.upper.refresh(node)
        else:
            fd = self._upper_fd(node)
            if fd is not None:
                self.index.set_stat(node, os.fstat(fd))
        return node

    def _upper_fd(self, node: Node) -> int | None:
        """A descriptor some handle holds of ``node``'s upper file (its only way
        in once its last name is gone)."""
        return next((handle.fd for handle in self._files.handles()
                     if handle.node.ino == node.ino and handle.layer == self.index.upper), None)

    def _entry(self, node: Node) -> Entry:
        self._remember(node)
        return self._attributes(node)

    def _caller(self, ctx: Context) -> Caller:
        return Caller(*self.ids.new_owner(ctx.uid, ctx.gid))  # idmap: the stored owner-to-be

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

    def _open_backing(self, node: Node) -> tuple[int, int]:
        """A read-only descriptor of ``node``'s data, and the layer providing ``node``."""
        position, relpath = self.index.data_backing(node)
        layer = self.index.layers[position]
        layer.ensure_content(relpath)
        with backing_io(layer, relpath):
            return open_for_reading(self._layer_fds[position], relpath), node.layer

    async def _open_for_reading(self, node: Node) -> tuple[int, int]:
        if self._fetching:
            # Its data may first have to come over the network: not on the event loop.
            return await trio.to_thread.run_sync(self._open_backing, node)
        # The index already stat'ed this file at mount: opening it is a
        # short, cached path walk, cheaper inline than a thread hop.
        return self._open_backing(node)

    async def _reader(self, ino: int, fh: int) -> OpenFile:
        """The open file that serves reads of ``ino``: handle ``fh``'s, or for
        fh 0 (opened without asking) a cached descriptor by inode."""
        if fh:
            handle = self._files.get(fh)
            if handle is None:
                raise FUSEError(errno.EBADF)
        else:
            cached = self._files.cached(ino)
            if cached is None:
                node = self._node(ino)
                fd, layer = await self._open_for_reading(node)
                cached = OpenFile(node, fd, layer, False)
                self._files.cache(cached)
            handle = cached
        if handle.layer != handle.node.layer and self.index.is_attached(handle.node):
            # Copied up since it was opened: read the new file, as the kernel does.
            fd, layer = await trio.to_thread.run_sync(self._open_backing, handle.node)
            os.close(handle.fd)
            handle.fd, handle.layer = fd, layer
        return handle

    def _writer(self, fh: int) -> OpenFile:
        """The open file of handle ``fh``, which must be open for writing."""
        handle = self._files.get(fh)
        if handle is None or not handle.writable:
            raise FUSEError(errno.EBADF)
        return handle

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
            layer = node.layer
        else:
            fd, layer = await self._open_for_reading(node)
        fh = self._files.add(OpenFile(node, fd, layer, writing))
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
        if cached is not None:
            return cached
        return await trio.to_thread.run_sync(os.pread, handle.fd, size, offset)

    @_request
    async def write(self, ino: int, fh: int, offset: int, data: bytes | memoryview) -> int:
        handle = self._writer(fh)
        if len(data) <= _INLINE_WRITE_BYTES:
            # Into the page cache: quicker than handing it to a worker thread.
            written = os.pwrite(handle.fd, data, offset)
        else:
            written = await trio.to_thread.run_sync(os.pwrite, handle.fd, data, offset)
        self._stale.add(handle.node.ino)
        return written

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
    async def fsync(self, ino: int, fh: int, datasync: bool) -> None:
        handle = self._files.get(fh)
        if handle is None or not handle.writable or self.upper is None \
                or not self.upper.disk.fsync_enabled:
            return None
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, handle.fd)

    @_request
    async def lseek(self, ino: int, fh: int, offset: int, whence: int) -> int:
        # The kernel asks only for SEEK_DATA and SEEK_HOLE: the backing file knows.
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise FUSEError(errno.EINVAL)
        handle = await self._reader(ino, fh)
        return os.lseek(handle.fd, offset, whence)

    # -- writes: through the upper dir, EROFS without one --------------------------

    def _writable(self) -> Upper:
        if self.upper is None:
            raise FUSEError(errno.EROFS)
        return self.upper

    async def _change(self, operation: Callable[..., Any], *args: Any, slow: bool = False) -> Any:
        """Run one change of the tree, one at a time; a slow one (copying file
        data) in a worker thread. Then tell the kernel about side effects."""
        if self._write_lock is None:
            self._write_lock = trio.Lock()
        upper = self._writable()
        async with self._write_lock:
            try:
                if slow:
                    return await trio.to_thread.run_sync(operation, *args)
                return operation(*args)
            finally:
                touched, upper.touched = upper.touched, set()
                for ino in touched:
                    self._stale.discard(ino)
                    node = self.index.get(ino)
                    # A directory's cached listing goes too; a file's pages
                    # stay (a copy-up keeps its data, and dropping pages from
                    # inside a request could wait on a read we must answer).
                    self.notifier.invalidate_inode(
                        ino, attr_only=node is None or not node.is_dir)

    @_request
    async def fallocate(self, ino: int, fh: int, offset: int, length: int, mode: int) -> None:
        upper = self._writable()
        node = self._node(ino)
        fd = self._writer(fh).fd if fh else None
        await self._change(functools.partial(upper.fallocate, node, offset, length, mode, fd=fd),
                           slow=True)
        self._stale.discard(ino)

    @_request
    async def copy_file_range(self, ino_in: int, fh_in: int, offset_in: int, ino_out: int,
                              fh_out: int, offset_out: int, length: int, flags: int) -> int:
        self._writable()
        if flags:
            raise FUSEError(errno.EINVAL)
        source = await self._reader(ino_in, fh_in)
        target = self._writer(fh_out)  # opened for writing: copied up already
        copied = await trio.to_thread.run_sync(
            os.copy_file_range, source.fd, target.fd, min(length, _COPY_CHUNK),
            offset_in, offset_out)
        self._stale.add(target.node.ino)
        return copied

    @_request
    async def create(self, parent: int, name: bytes, mode: int, flags: int,
                     ctx: Context) -> tuple[Opened, Entry]:
        upper = self._writable()
        directory = self._node(parent)
        node, fd = await self._change(upper.create, directory, name, mode, self._caller(ctx), flags)
        fh = self._files.add(OpenFile(node, fd, node.layer, True))
        return Opened(fh, keep_cache=True), self._entry(node)

    @_request
    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.mkdir, self._node(parent), name, mode, self._caller(ctx))
        return self._entry(node)

    @_request
    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int,
                    ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.mknod, self._node(parent), name, mode, rdev,
                                  self._caller(ctx))
        return self._entry(node)

    @_request
    async def symlink(self, parent: int, name: bytes, target: bytes, ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.symlink, self._node(parent), name, target,
                                  self._caller(ctx))
        return self._entry(node)

    @_request
    async def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Context) -> Entry:
        upper = self._writable()
        node = self._node(ino)
        alias = await self._change(upper.link, node, self._node(new_parent), new_name,
                                   slow=upper.needs_data_copy(node))
        return self._entry(alias)

    @_request
    async def unlink(self, parent: int, name: bytes, ctx: Context) -> None:
        upper = self._writable()
        await self._change(upper.unlink, self._node(parent), name)

    @_request
    async def rmdir(self, parent: int, name: bytes, ctx: Context) -> None:
        upper = self._writable()
        await self._change(upper.rmdir, self._node(parent), name)

    @_request
    async def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes,
                     flags: int, ctx: Context) -> None:
        upper = self._writable()
        old_parent = self._node(parent)
        moving = self.index.lookup(old_parent, name)
        slow = moving is not None and upper.needs_data_copy(moving)
        if flags & ~(api.RENAME_NOREPLACE | api.RENAME_EXCHANGE):
            raise FUSEError(errno.EINVAL)
        ours = (RENAME_NOREPLACE if flags & api.RENAME_NOREPLACE else 0) | \
            (RENAME_EXCHANGE if flags & api.RENAME_EXCHANGE else 0)
        await self._change(upper.rename, old_parent, name, self._node(new_parent),
                           new_name, ours, slow=slow)

    @_request
    async def setattr(self, ino: int, changes: AttrChanges, fh: int | None,
                      ctx: Context) -> Entry:
        upper = self._writable()
        node = self._node(ino)
        handle = self._files.get(fh) if fh is not None else None
        fd = handle.fd if handle is not None and handle.writable else None
        if fd is None and not self.index.is_attached(node):
            fd = self._upper_fd(node)
        uid, gid = self.ids.chown_to(changes.uid, changes.gid)  # idmap
        slow = changes.size not in (None, 0) and upper.needs_data_copy(node)
        await self._change(functools.partial(
            upper.setattr, node, fd=fd, mode=changes.mode, uid=uid, gid=gid,
            size=changes.size, atime_ns=changes.atime_ns, mtime_ns=changes.mtime_ns), slow=slow)
        self._stale.discard(node.ino)
        return self._attributes(node)

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
