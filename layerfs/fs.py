"""The FUSE operations: a thin translation between kernel requests and the index.

Attributes, lookups and listings come from :class:`~layerfs.index.PathIndex`;
file data and xattrs are read from the backing layer. Write requests go to
:class:`~layerfs.upper.Upper` when the mount has an upper dir (EROFS
without). No merge or copy-up logic lives here: handlers resolve inodes and
handles, call in, and tell the kernel what changed. Every handler runs
inside :func:`_request`, which maps exceptions to errno in one place
(unexpected ones to EIO with a logged traceback). A mount whose layers are
still arriving (:class:`~layerfs.deferred.DeferredIndex`) makes
:func:`_request` wait for the index, in that one place, before any handler
that needs it; statfs and the root's attributes are answered at once.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import pyfuse3
import trio

from .backing import backing_io, open_for_reading, read_if_cached
from .deferred import DeferredIndex
from .errors import LayerfsError, errno_for
from .idmap import IDENTITY, IdMap
from .index import Node, PathIndex
from .upper import Caller, Upper
from .upperdir import RENAME_EXCHANGE, RENAME_NOREPLACE

log = logging.getLogger(__name__)

# Layers never change behind the kernel's back: let it cache for long.
CACHE_TIMEOUT = 3600.0

# Writes up to this size are done on the event loop, bigger ones in a thread.
_INLINE_WRITE_BYTES = 1 << 20

# readdir offsets: 1 and 2 are "." and "..", children start at 3.
_FIRST_CHILD_OFFSET = 3

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
        except pyfuse3.FUSEError:
            raise
        except (OSError, LayerfsError) as exc:
            if self.debug:
                log.debug("%s failed: %s", name, exc)
            raise pyfuse3.FUSEError(errno_for(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a bug must fail one request, not the daemon
            log.exception("unexpected error in %s%r", name, args)
            raise pyfuse3.FUSEError(errno_for(exc)) from None

    return wrapper  # type: ignore[return-value]


def _shown_args(args: tuple) -> tuple:
    """A request's arguments for the debug log: without the context, data abridged."""
    if args and _is_ctx(args[-1]):
        args = args[:-1]
    return tuple(f"<{len(arg)} bytes>" if isinstance(arg, bytes) and len(arg) > 64 else arg
                 for arg in args)


def _is_ctx(value: object) -> bool:
    return isinstance(value, pyfuse3.RequestContext)


@dataclass(slots=True)
class OpenFile:
    """An open file: the node, a descriptor of its backing file, and the layer
    that descriptor reads (a reader follows its file when it is copied up)."""

    node: Node
    fd: int
    layer: int
    writable: bool


@dataclass(slots=True)
class OpenDir:
    node: Node
    names: list[bytes]
    """The listing as it was at the last rewind: offsets index into it."""


class LayerOperations(pyfuse3.Operations):
    """FUSE view of a :class:`PathIndex`, writable through an :class:`Upper`."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, index: PathIndex | DeferredIndex, *, debug: bool = False,
                 upper: Upper | None = None,
                 after_init: Callable[[], None] | None = None, ids: IdMap = IDENTITY) -> None:
        super().__init__()
        self.ids = ids  # idmap: stored owners <-> shown owners (layerfs/idmap.py)
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
        self._layer_fds: list[int] = []
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, OpenDir] = {}
        self._handle_numbers = itertools.count(1)
        self._lookups: Counter[int] = Counter()
        self._stale: set[int] = set()
        """Upper inodes written since their attributes were last read."""
        self._write_lock: trio.Lock | None = None
        self._name_max = 255
        """The longest name every layer can hold (the kernel overlay's namelen)."""
        self.last_request = time.monotonic()
        """When the latest request came (background work waits for a quiet spell)."""

    # -- lifecycle -------------------------------------------------------------

    def init(self) -> None:
        # Called while the kernel's INIT is answered; what must come after the
        # kernel took the answer (it resets the mount's read-ahead) runs next.
        if self._after_init is not None:
            trio.lowlevel.current_trio_token().run_sync_soon(self._after_init)

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
        for fd in self._layer_fds:
            os.close(fd)
        self._layer_fds.clear()

    # -- a mount whose layers are still arriving ---------------------------------

    def _answers_early(self, name: str, args: tuple) -> bool:
        """Requests answered before the index is ready: they must not hang (mount(8),
        df and the mountpoint's own stat ask them)."""
        return name == "statfs" or name == "getattr" and args[0] == pyfuse3.ROOT_INODE

    async def until_ready(self) -> None:
        """Wait for a deferred index and take it over (nothing to wait for without one)."""
        if self._deferred is None:
            return
        index = await self._deferred.ready()
        if self._deferred is not None:  # the first request to wake up takes it over
            self._deferred = None
            self.index = index
            self.open_layers()

    @staticmethod
    def _provisional_root() -> pyfuse3.EntryAttributes:
        """The root's attributes until the index is ready, not to be cached."""
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = pyfuse3.ROOT_INODE
        attr.st_mode = stat.S_IFDIR | 0o755
        attr.st_nlink = 2
        attr.st_blksize = 4096
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = time.time_ns()
        attr.entry_timeout = attr.attr_timeout = 0
        return attr

    # -- helpers ---------------------------------------------------------------

    def _node(self, inode: int) -> Node:
        node = self.index.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
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
            for handle in self._files.values():
                if handle.node.ino == node.ino and handle.layer == self.index.upper:
                    self.index.set_stat(node, os.fstat(handle.fd))
                    break
        return node

    def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        self._remember(node)
        return self._attributes(node)

    def _caller(self, ctx: pyfuse3.RequestContext) -> Caller:
        return Caller(*self.ids.new_owner(ctx.uid, ctx.gid))  # idmap: the stored owner-to-be

    def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.generation = 0
        attr.entry_timeout = CACHE_TIMEOUT
        attr.attr_timeout = CACHE_TIMEOUT
        attr.st_mode = node.mode
        attr.st_nlink = node.shown_nlink
        attr.st_uid = self.ids.shown_uid(node.uid)  # idmap: what stat shows and
        attr.st_gid = self.ids.shown_gid(node.gid)  # default_permissions checks
        attr.st_rdev = node.rdev
        attr.st_size = node.size
        attr.st_blksize = 4096
        attr.st_blocks = node.blocks
        attr.st_atime_ns = node.atime_ns
        attr.st_mtime_ns = node.mtime_ns
        attr.st_ctime_ns = node.ctime_ns
        return attr

    # -- metadata --------------------------------------------------------------

    @_request
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        if len(name) > self._name_max:
            # FUSE passes longer names on; no layer could hold one (as the kernel overlay says).
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        if name == b".":
            node: Node | None = parent
        elif name == b"..":
            node = parent.parent or parent
        else:
            node = self.index.lookup(parent, name)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(self._fresh(node))

    @_request
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if self._deferred is not None:
            return self._provisional_root()
        return self._attributes(self._fresh(self._node(inode), always=True))

    @_request
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if not stat.S_ISLNK(node.mode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return self.index.read_link(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        # Nodes with a name live as long as the mount; a removed one goes when
        # the kernel forgets it.
        if self.upper is None:
            return None
        for inode, count in inode_list:
            left = self._lookups[inode] - count
            if left > 0:
                self._lookups[inode] = left
                continue
            self._lookups.pop(inode, None)
            self._stale.discard(inode)
            self.index.forget(inode)
        return None

    @_request
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self._deferred.statfs_path if self._deferred is not None
                        else self.index.layers[-1].root)
        data = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                      "f_files", "f_ffree", "f_favail"):
            setattr(data, field, getattr(st, field))
        data.f_namemax = self._name_max
        return data

    # -- xattrs ----------------------------------------------------------------

    @_request
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return self.index.get_xattr(self._node(inode), name)

    @_request
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return self.index.list_xattrs(self._node(inode))

    # -- directories -----------------------------------------------------------

    @_request
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._handle_numbers)
        self._dirs[fh] = OpenDir(node, node.listing())
        return fh

    @_request
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        opened = self._dirs[fh]
        node = opened.node
        assert node.children is not None
        if start_id == 0:
            # A rewind sees the changes made since (as the kernel overlay does).
            opened.names = node.listing()
        if start_id < 1:
            if not pyfuse3.readdir_reply(token, b".", self._attributes(node), 1):
                return
        if start_id < 2:
            parent = node.parent or node
            if not pyfuse3.readdir_reply(token, b"..", self._attributes(parent), 2):
                return
        names = opened.names
        first = max(start_id - _FIRST_CHILD_OFFSET + 1, 0)
        for position in range(first, len(names)):
            child = node.children.get(names[position])
            if child is None:
                continue  # removed since the listing was taken
            next_id = position + _FIRST_CHILD_OFFSET
            attributes = self._attributes(self._fresh(child))
            if not pyfuse3.readdir_reply(token, child.name, attributes, next_id):
                return
            self._remember(child)

    @_request
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    @_request
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        opened = self._dirs.get(fh)
        if self.upper is None or opened is None or not self.index.is_upper(opened.node):
            return None
        upper, node = self.upper, opened.node
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

    @_request
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        writing = Upper.opens_for_write(flags)
        if writing:
            upper = self._writable()
            fd = await self._change(upper.open_for_write, node, flags,
                                    slow=not flags & os.O_TRUNC and upper.needs_data_copy(node))
            if flags & os.O_TRUNC:
                self._stale.add(node.ino)
            layer = node.layer
        elif self._fetching:
            # Its data may first have to come over the network: not on the event loop.
            fd, layer = await trio.to_thread.run_sync(self._open_backing, node)
        else:
            # The index already stat'ed this file at mount: opening it is a
            # short, cached path walk, cheaper inline than a thread hop.
            fd, layer = self._open_backing(node)
        fh = next(self._handle_numbers)
        self._files[fh] = OpenFile(node, fd, layer, writing)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @_request
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._files[fh]
        if handle.layer != handle.node.layer and self.index.is_attached(handle.node):
            # Copied up since it was opened: read the new file, as the kernel does.
            fd, layer = await trio.to_thread.run_sync(self._open_backing, handle.node)
            os.close(handle.fd)
            handle.fd, handle.layer = fd, layer
        # Cached data is served inline; only a read that needs the disk pays
        # for a worker thread (and does not stall other requests).
        # A lower layer's file cannot change: its size says where it ends.
        end = None if handle.layer == self.index.upper else handle.node.size
        cached = read_if_cached(handle.fd, size, off, end)
        if cached is not None:
            return cached
        return await trio.to_thread.run_sync(os.pread, handle.fd, size, off)

    @_request
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._files[fh]
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        if len(buf) <= _INLINE_WRITE_BYTES:
            # Into the page cache: quicker than handing it to a worker thread.
            written = os.pwrite(handle.fd, buf, off)
        else:
            written = await trio.to_thread.run_sync(os.pwrite, handle.fd, buf, off)
        self._stale.add(handle.node.ino)
        return written

    @_request
    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            os.close(handle.fd)

    async def flush(self, fh: int) -> None:
        if self.upper is None:
            # Read-only: nothing to do on close(2). ENOSYS tells the kernel to
            # stop sending FLUSH at all, saving a round trip on every close.
            raise pyfuse3.FUSEError(errno.ENOSYS)
        # With an upper the kernel drops its cached attributes after a flush,
        # so a file written through another name shows its new size.
        return None

    @_request
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._files[fh]
        if not handle.writable or self.upper is None or not self.upper.disk.fsync_enabled:
            return None
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, handle.fd)

    # -- writes: through the upper dir, EROFS without one --------------------------

    def _writable(self) -> Upper:
        if self.upper is None:
            raise pyfuse3.FUSEError(errno.EROFS)
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
                for inode in touched:
                    self._stale.discard(inode)
                    try:
                        pyfuse3.invalidate_inode(inode, attr_only=True)
                    except OSError:
                        pass  # not in the kernel's cache: nothing to invalidate

    @_request
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        upper = self._writable()
        parent = self._node(parent_inode)
        node, fd = await self._change(upper.create, parent, name, mode, self._caller(ctx), flags)
        fh = next(self._handle_numbers)
        self._files[fh] = OpenFile(node, fd, node.layer, True)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self._entry(node)

    @_request
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        upper = self._writable()
        node = await self._change(upper.mkdir, self._node(parent_inode), name, mode,
                                  self._caller(ctx))
        return self._entry(node)

    @_request
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        upper = self._writable()
        node = await self._change(upper.mknod, self._node(parent_inode), name, mode, rdev,
                                  self._caller(ctx))
        return self._entry(node)

    @_request
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        upper = self._writable()
        node = await self._change(upper.symlink, self._node(parent_inode), name, target,
                                  self._caller(ctx))
        return self._entry(node)

    @_request
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        upper = self._writable()
        node = self._node(inode)
        alias = await self._change(upper.link, node, self._node(new_parent_inode), new_name,
                                   slow=upper.needs_data_copy(node))
        return self._entry(alias)

    @_request
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        upper = self._writable()
        await self._change(upper.unlink, self._node(parent_inode), name)

    @_request
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        upper = self._writable()
        await self._change(upper.rmdir, self._node(parent_inode), name)

    @_request
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        upper = self._writable()
        old_parent = self._node(parent_inode_old)
        moving = self.index.lookup(old_parent, name_old)
        slow = moving is not None and upper.needs_data_copy(moving)
        ours = (RENAME_NOREPLACE if flags & pyfuse3.RENAME_NOREPLACE else 0) | \
            (RENAME_EXCHANGE if flags & pyfuse3.RENAME_EXCHANGE else 0)
        if flags & ~(pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE):
            raise pyfuse3.FUSEError(errno.EINVAL)
        await self._change(upper.rename, old_parent, name_old, self._node(parent_inode_new),
                           name_new, ours, slow=slow)

    @_request
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        upper = self._writable()
        node = self._node(inode)
        handle = self._files.get(fh) if fh is not None else None
        fd = handle.fd if handle is not None and handle.writable else None
        if fd is None and not self.index.is_attached(node):
            fd = next((h.fd for h in self._files.values()
                       if h.node.ino == node.ino and h.layer == self.index.upper), None)
        uid, gid = self.ids.chown_to(attr.st_uid if fields.update_uid else None,  # idmap
                                     attr.st_gid if fields.update_gid else None)
        changes = {
            "mode": attr.st_mode if fields.update_mode else None,
            "uid": uid,
            "gid": gid,
            "size": attr.st_size if fields.update_size else None,
            "atime_ns": attr.st_atime_ns if fields.update_atime else None,
            "mtime_ns": attr.st_mtime_ns if fields.update_mtime else None,
        }
        slow = fields.update_size and attr.st_size != 0 and upper.needs_data_copy(node)
        await self._change(functools.partial(upper.setattr, node, fd=fd, **changes), slow=slow)
        self._stale.discard(node.ino)
        return self._attributes(node)

    @_request
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        upper = self._writable()
        node = self._node(inode)
        await self._change(upper.setxattr, node, name, value, slow=upper.needs_data_copy(node))

    @_request
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        upper = self._writable()
        node = self._node(inode)
        await self._change(upper.removexattr, node, name, slow=upper.needs_data_copy(node))
