"""The pyfuse3 engine: libfuse's protocol handling, through pyfuse3, driving
an :class:`layerfs.fuse.api.Operations`.

:class:`Pyfuse3Adapter` is the ``pyfuse3.Operations`` that pyfuse3 calls;
it translates each call into the engine-neutral one: pyfuse3's read,
readdir and the other handle-based handlers get the inode back from the
handle (it remembers which inode each OPEN, OPENDIR and CREATE handle is
of), results become pyfuse3's types, :class:`~layerfs.fuse.api.FUSEError`
becomes ``pyfuse3.FUSEError``. pyfuse3 cannot do zero-message opens, cached
listings, FALLOCATE, LSEEK or COPY_FILE_RANGE: the kernel falls back for
those (posix_fallocate writes zeros, for one).
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Awaitable, Sequence, TypeVar

import pyfuse3
import trio

from ..errors import MountError
from ..fuse import api

log = logging.getLogger(__name__)

T = TypeVar("T")


async def _answer(call: Awaitable[T]) -> T:
    """The handler's result, its FUSEError as pyfuse3's; a bug is logged and
    answered EIO (pyfuse3 would end the mount on any other exception)."""
    try:
        return await call
    except api.FUSEError as exc:
        raise pyfuse3.FUSEError(exc.errno) from None
    except Exception:  # noqa: BLE001 - one failed request, not a dead daemon
        log.exception("unexpected error in a request")
        raise pyfuse3.FUSEError(errno.EIO) from None


def _context(ctx: pyfuse3.RequestContext) -> api.Context:
    return api.Context(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid, umask=ctx.umask)


def _entry_attributes(entry: api.Entry) -> pyfuse3.EntryAttributes:
    attrs, out = entry.attributes, pyfuse3.EntryAttributes()
    out.st_ino = attrs.ino
    out.generation = entry.generation
    out.entry_timeout = entry.entry_timeout
    out.attr_timeout = entry.attr_timeout
    out.st_mode = attrs.mode
    out.st_nlink = attrs.nlink
    out.st_uid = attrs.uid
    out.st_gid = attrs.gid
    out.st_rdev = attrs.rdev
    out.st_size = attrs.size
    out.st_blksize = attrs.blksize
    out.st_blocks = attrs.blocks
    out.st_atime_ns = attrs.atime_ns
    out.st_mtime_ns = attrs.mtime_ns
    out.st_ctime_ns = attrs.ctime_ns
    return out


def _file_info(opened: api.Opened) -> pyfuse3.FileInfo:
    # pyfuse3 has no cache_dir or noflush: the kernel gets neither.
    return pyfuse3.FileInfo(fh=opened.fh, keep_cache=opened.keep_cache,
                            direct_io=opened.direct_io, nonseekable=opened.nonseekable)


class Pyfuse3Notifier:
    """Invalidation notices through libfuse."""

    def invalidate_inode(self, ino: int, *, attr_only: bool = False) -> None:
        try:
            pyfuse3.invalidate_inode(ino, attr_only)
        except OSError:
            pass  # not in the kernel's cache: nothing to invalidate

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        # In a thread: the kernel may hold the directory's lock for the request
        # being answered.
        pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)


class Pyfuse3Adapter(pyfuse3.Operations):
    """pyfuse3's handlers, each a call of ``ops``."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, ops: api.Operations) -> None:
        super().__init__()
        self.ops = ops
        self._inodes: dict[int, int] = {}
        """The inode of each open handle (files and directories)."""

    def init(self) -> None:
        # pyfuse3 calls this while the kernel's INIT is being answered; the
        # filesystem hears of it once the answer is gone.
        trio.lowlevel.current_trio_token().run_sync_soon(self.ops.init, Pyfuse3Notifier())

    def _opened(self, ino: int, opened: api.Opened) -> int:
        self._inodes[opened.fh] = ino
        return opened.fh

    # -- metadata ------------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.lookup(parent_inode, name,
                                                               _context(ctx))))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            await self.ops.forget(inode_list)
        except Exception:  # noqa: BLE001 - FORGET has no answer to fail
            log.exception("unexpected error in forget")

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.getattr(inode, _context(ctx))))

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        # pyfuse3 has already turned "now" into the current time.
        changes = api.AttrChanges(
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            ctime_ns=attr.st_ctime_ns if fields.update_ctime else None)
        return _entry_attributes(await _answer(self.ops.setattr(inode, changes, fh,
                                                                _context(ctx))))

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return await _answer(self.ops.readlink(inode, _context(ctx)))

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = await _answer(self.ops.statfs(api.ROOT_INODE, _context(ctx)))
        data = pyfuse3.StatvfsData()
        data.f_bsize, data.f_frsize = stats.bsize, stats.frsize
        data.f_blocks, data.f_bfree, data.f_bavail = stats.blocks, stats.bfree, stats.bavail
        data.f_files, data.f_ffree, data.f_favail = stats.files, stats.ffree, stats.ffree
        data.f_namemax = stats.namemax
        return data

    # -- xattrs --------------------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return await _answer(self.ops.getxattr(inode, name, _context(ctx)))

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        return await _answer(self.ops.listxattr(inode, _context(ctx)))

    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        # pyfuse3 does not pass setxattr(2)'s flags on.
        await _answer(self.ops.setxattr(inode, name, value, 0, _context(ctx)))

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await _answer(self.ops.removexattr(inode, name, _context(ctx)))

    # -- directories ---------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return self._opened(inode, await _answer(self.ops.opendir(inode, _context(ctx))))

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        def add(name: bytes, entry: api.Entry, next_offset: int) -> bool:
            return pyfuse3.readdir_reply(token, name, _entry_attributes(entry), next_offset)

        # pyfuse3 answers READDIRPLUS: every entry sent is a lookup.
        await _answer(self.ops.readdir(self._inodes[fh], fh, start_id, True, add))

    async def releasedir(self, fh: int) -> None:
        await _answer(self.ops.releasedir(self._inodes.pop(fh), fh))

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await _answer(self.ops.fsyncdir(self._inodes[fh], fh, datasync))

    # -- files ---------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        opened = await _answer(self.ops.open(inode, flags, _context(ctx)))
        self._opened(inode, opened)
        return _file_info(opened)

    async def read(self, fh: int, off: int, size: int) -> Any:
        return await _answer(self.ops.read(self._inodes[fh], fh, off, size))

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await _answer(self.ops.write(self._inodes[fh], fh, off, buf))

    async def flush(self, fh: int) -> None:
        await _answer(self.ops.flush(self._inodes[fh], fh))

    async def release(self, fh: int) -> None:
        await _answer(self.ops.release(self._inodes.pop(fh), fh))

    async def fsync(self, fh: int, datasync: bool) -> None:
        await _answer(self.ops.fsync(self._inodes[fh], fh, datasync))

    # -- changes -------------------------------------------------------------------

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        opened, entry = await _answer(self.ops.create(parent_inode, name, mode, flags,
                                                      _context(ctx)))
        self._opened(entry.attributes.ino, opened)
        return _file_info(opened), _entry_attributes(entry)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.mkdir(parent_inode, name, mode,
                                                              _context(ctx))))

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.mknod(parent_inode, name, mode, rdev,
                                                              _context(ctx))))

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.symlink(parent_inode, name, target,
                                                                _context(ctx))))

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry_attributes(await _answer(self.ops.link(inode, new_parent_inode, new_name,
                                                             _context(ctx))))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await _answer(self.ops.unlink(parent_inode, name, _context(ctx)))

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await _answer(self.ops.rmdir(parent_inode, name, _context(ctx)))

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        # pyfuse3's RENAME_* are rename(2)'s, as api's are.
        await _answer(self.ops.rename(parent_inode_old, name_old, parent_inode_new, name_new,
                                      flags, _context(ctx)))


class Pyfuse3Engine:
    """Mounts and serves through pyfuse3 (libfuse)."""

    name = "pyfuse3"
    zero_message_opens = False
    """pyfuse3 cannot let the kernel open without asking."""

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug

    def mount(self, ops: api.Operations, mountpoint: str, options: set[str]) -> None:
        try:
            pyfuse3.init(Pyfuse3Adapter(ops), mountpoint, options)
        except RuntimeError as exc:
            raise MountError(f"{mountpoint}: cannot mount ({exc}; see the message above)"
                             ) from None

    async def serve(self) -> None:
        await pyfuse3.main()

    def terminate(self) -> None:
        pyfuse3.terminate()

    def close(self, unmount: bool) -> None:
        pyfuse3.close(unmount=unmount)
