"""The filesystem's write requests: each translated into one call of :class:`~layerfs.upper.Upper`.

:class:`WriteOperations` is the half of :class:`~layerfs.fs.LayerOperations`
that changes the merged view: data written through a handle, new names,
removals, renames, attributes, fallocate and copy_file_range. Without an
upper dir each answers EROFS. Changes run one at a time (a slow one, that
copies file data, in a worker thread); each returns the inodes it touched on
the side (:class:`~layerfs.changes.Change`), and exactly those are
invalidated in the kernel. No write rule lives here.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterable
from typing import Any, Callable

import trio

from .changes import Change, FailedChange
from .fuse import api
from .fuse.api import AttrChanges, Context, Entry, FUSEError, Notifier, Opened
from .handler import request
from .idmap import IdMap
from .index import PathIndex
from .openfiles import OpenFile, OpenFiles
from .upper import Caller, Upper
from .upperdir import RENAME_EXCHANGE, RENAME_NOREPLACE

# Writes up to this size are done on the event loop, bigger ones in a thread.
_INLINE_WRITE_BYTES = 1 << 20

# A copy_file_range reply counts its bytes in 32 bits: copy at most this much at once.
_COPY_CHUNK = 1 << 30


class WriteOperations:
    """The write handlers of :class:`~layerfs.fs.LayerOperations` (its base class,
    which provides the state below and ``_node``, ``_entry``, ``_attributes``
    and ``_reader``)."""

    index: PathIndex
    upper: Upper | None
    ids: IdMap
    notifier: Notifier
    _files: OpenFiles
    _stale: set[int]
    """Upper inodes written since their attributes were last read."""
    _write_lock: trio.Lock | None

    # -- helpers -----------------------------------------------------------------------

    def _writable(self) -> Upper:
        if self.upper is None:
            raise FUSEError(errno.EROFS)
        return self.upper

    def _writer(self, fh: int) -> OpenFile:
        """The open file of handle ``fh``, which must be open for writing."""
        handle = self._files.get(fh)
        if handle is None or not handle.writable:
            raise FUSEError(errno.EBADF)
        return handle

    def _caller(self, ctx: Context) -> Caller:
        return Caller(*self.ids.new_owner(ctx.uid, ctx.gid))  # idmap: the stored owner-to-be

    async def _change(self, operation: Callable[..., Change[Any]], *args: Any,
                      slow: bool = False) -> Any:
        """Run one change of the tree, one at a time; a slow one (copying file
        data) in a worker thread. Then tell the kernel what it touched on the
        side; the change's answer is returned."""
        self._writable()
        if self._write_lock is None:
            self._write_lock = trio.Lock()
        async with self._write_lock:
            try:
                if slow:
                    change = await trio.to_thread.run_sync(operation, *args)
                else:
                    change = operation(*args)
            except FailedChange as failed:
                self._invalidate(failed.touched)
                raise
        self._invalidate(change.touched)
        return change.value

    def _invalidate(self, touched: Iterable[int]) -> None:
        for ino in touched:
            self._stale.discard(ino)
            node = self.index.get(ino)
            # A directory's cached listing goes too; a file's pages stay (a
            # copy-up keeps its data, and dropping pages from inside a
            # request could wait on a read we must answer).
            self.notifier.invalidate_inode(ino, attr_only=node is None or not node.is_dir)

    # -- data --------------------------------------------------------------------------

    @request
    async def write(self, ino: int, fh: int, offset: int, data: bytes | memoryview) -> int:
        handle = self._writer(fh)
        if len(data) <= _INLINE_WRITE_BYTES:
            # Into the page cache: quicker than handing it to a worker thread.
            written = os.pwrite(handle.fd, data, offset)
        else:
            written = await trio.to_thread.run_sync(os.pwrite, handle.fd, data, offset)
        self._stale.add(handle.node.ino)
        return written

    @request
    async def fsync(self, ino: int, fh: int, datasync: bool) -> None:
        handle = self._files.get(fh)
        if handle is None or not handle.writable or self.upper is None \
                or not self.upper.disk.fsync_enabled:
            return None
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, handle.fd)

    @request
    async def fallocate(self, ino: int, fh: int, offset: int, length: int, mode: int) -> None:
        upper = self._writable()
        node = self._node(ino)
        fd = self._writer(fh).fd if fh else None
        await self._change(functools.partial(upper.fallocate, node, offset, length, mode, fd=fd),
                           slow=True)
        self._stale.discard(ino)

    @request
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

    # -- names -------------------------------------------------------------------------

    @request
    async def create(self, parent: int, name: bytes, mode: int, flags: int,
                     ctx: Context) -> tuple[Opened, Entry]:
        upper = self._writable()
        directory = self._node(parent)
        node, fd = await self._change(upper.create, directory, name, mode, self._caller(ctx), flags)
        fh = self._files.add(OpenFile(node, fd, node.layer, True))
        return Opened(fh, keep_cache=True), self._entry(node)

    @request
    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.mkdir, self._node(parent), name, mode, self._caller(ctx))
        return self._entry(node)

    @request
    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int,
                    ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.mknod, self._node(parent), name, mode, rdev,
                                  self._caller(ctx))
        return self._entry(node)

    @request
    async def symlink(self, parent: int, name: bytes, target: bytes, ctx: Context) -> Entry:
        upper = self._writable()
        node = await self._change(upper.symlink, self._node(parent), name, target,
                                  self._caller(ctx))
        return self._entry(node)

    @request
    async def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Context) -> Entry:
        upper = self._writable()
        node = self._node(ino)
        alias = await self._change(upper.link, node, self._node(new_parent), new_name,
                                   slow=upper.needs_data_copy(node))
        return self._entry(alias)

    @request
    async def unlink(self, parent: int, name: bytes, ctx: Context) -> None:
        upper = self._writable()
        await self._change(upper.unlink, self._node(parent), name)

    @request
    async def rmdir(self, parent: int, name: bytes, ctx: Context) -> None:
        upper = self._writable()
        await self._change(upper.rmdir, self._node(parent), name)

    @request
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

    # -- attributes --------------------------------------------------------------------

    @request
    async def setattr(self, ino: int, changes: AttrChanges, fh: int | None,
                      ctx: Context) -> Entry:
        upper = self._writable()
        node = self._node(ino)
        handle = self._files.get(fh) if fh is not None else None
        fd = handle.fd if handle is not None and handle.writable else None
        if fd is None and not self.index.is_attached(node):
            fd = self._files.upper_fd(node)
        uid, gid = self.ids.chown_to(changes.uid, changes.gid)  # idmap
        slow = changes.size not in (None, 0) and upper.needs_data_copy(node)
        await self._change(functools.partial(
            upper.setattr, node, fd=fd, mode=changes.mode, uid=uid, gid=gid,
            size=changes.size, atime_ns=changes.atime_ns, mtime_ns=changes.mtime_ns), slow=slow)
        self._stale.discard(node.ino)
        return self._attributes(node)
