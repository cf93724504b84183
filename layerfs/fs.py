"""The FUSE operations: a thin translation between kernel requests and the index.

Attributes, lookups and listings come from :class:`~layerfs.index.PathIndex`;
file data and xattrs are read from the backing layer. No merge logic lives
here. Every handler runs inside :func:`_request`, which maps exceptions to
errno in one place (unexpected ones to EIO with a logged traceback).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import pyfuse3
import trio

from .backing import open_for_reading
from .errors import LayerfsError, errno_for
from .index import Node, PathIndex
from .layer import CONTENT_KEY

log = logging.getLogger(__name__)

# Layers never change behind the kernel's back: let it cache for long.
CACHE_TIMEOUT = 3600.0

# readdir offsets: 1 and 2 are "." and "..", children start at 3.
_FIRST_CHILD_OFFSET = 3

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _request(handler: F) -> F:
    """Log the request under --debug and turn any exception into a FUSE errno."""
    name = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: "LayerOperations", *args: Any) -> Any:
        if self.debug:
            log.debug("%s%r", name, args[:-1] if args and _is_ctx(args[-1]) else args)
        try:
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


def _is_ctx(value: object) -> bool:
    return isinstance(value, pyfuse3.RequestContext)


def _read_only(name: str) -> Callable[..., Awaitable[Any]]:
    async def handler(self: "LayerOperations", *args: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    handler.__name__ = name
    return _request(handler)


class LayerOperations(pyfuse3.Operations):
    """Read-only FUSE view of a :class:`PathIndex`."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, index: PathIndex, *, debug: bool = False) -> None:
        super().__init__()
        self.index = index
        self.debug = debug
        self._layer_fds: list[int] = []

    # -- lifecycle -------------------------------------------------------------

    def open_layers(self) -> None:
        """Hold each layer's root open: backing files are opened beneath it."""
        for layer in self.index.layers:
            self._layer_fds.append(
                os.open(layer.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    def close_layers(self) -> None:
        for fd in self._layer_fds:
            os.close(fd)
        self._layer_fds.clear()

    # -- helpers ---------------------------------------------------------------

    def _node(self, inode: int) -> Node:
        node = self.index.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _backing_path(self, node: Node) -> bytes:
        layer, relpath = self.index.backing(node)
        return layer.path_of(relpath)

    @staticmethod
    def _attributes(node: Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.generation = 0
        attr.entry_timeout = CACHE_TIMEOUT
        attr.attr_timeout = CACHE_TIMEOUT
        attr.st_mode = node.mode
        attr.st_nlink = node.shown_nlink
        attr.st_uid = node.uid
        attr.st_gid = node.gid
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
        if name == b".":
            node: Node | None = parent
        elif name == b"..":
            node = parent.parent or parent
        else:
            node = self.index.lookup(parent, name)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(node)

    @_request
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attributes(self._node(inode))

    @_request
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if not stat.S_ISLNK(node.mode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.readlink(self._backing_path(node))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        # Nodes live as long as the mount; nothing to free.
        return None

    @_request
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.index.layers[-1].root)
        data = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                      "f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(data, field, getattr(st, field))
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
        return inode

    @_request
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        node = self._node(fh)
        assert node.children is not None
        if start_id < 1:
            if not pyfuse3.readdir_reply(token, b".", self._attributes(node), 1):
                return
        if start_id < 2:
            parent = node.parent or node
            if not pyfuse3.readdir_reply(token, b"..", self._attributes(parent), 2):
                return
        names = node.listing()
        first = max(start_id - _FIRST_CHILD_OFFSET + 1, 0)
        for position in range(first, len(names)):
            child = node.children[names[position]]
            next_id = position + _FIRST_CHILD_OFFSET
            if not pyfuse3.readdir_reply(token, child.name, self._attributes(child), next_id):
                return

    @_request
    async def releasedir(self, fh: int) -> None:
        return None

    # -- files -----------------------------------------------------------------

    @_request
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise pyfuse3.FUSEError(errno.EROFS)
        content = self.index.layers[node.layer].extra.get(CONTENT_KEY)
        if content is not None:  # a lazily fetched layer: the data arrives on first open
            await trio.to_thread.run_sync(content.ensure, node.path())
        layer_fd = self._layer_fds[node.layer]
        fd = await trio.to_thread.run_sync(open_for_reading, layer_fd, node.path())
        return pyfuse3.FileInfo(fh=fd, keep_cache=True)

    @_request
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await trio.to_thread.run_sync(os.pread, fh, size, off)

    @_request
    async def release(self, fh: int) -> None:
        os.close(fh)

    @_request
    async def flush(self, fh: int) -> None:
        return None

    @_request
    async def fsync(self, fh: int, datasync: bool) -> None:
        return None

    # -- writes: none without an upper dir -------------------------------------

    setattr = _read_only("setattr")
    mknod = _read_only("mknod")
    mkdir = _read_only("mkdir")
    unlink = _read_only("unlink")
    rmdir = _read_only("rmdir")
    symlink = _read_only("symlink")
    rename = _read_only("rename")
    link = _read_only("link")
    write = _read_only("write")
    create = _read_only("create")
    setxattr = _read_only("setxattr")
    removexattr = _read_only("removexattr")
