"""A small in-memory filesystem implementing layerfs.fuse.api.Operations, for the engine's tests.

Files, directories, symlinks, device nodes, hard links, xattrs, writes,
rename (with RENAME_NOREPLACE/EXCHANGE), readdirplus. With
``zero_open=True`` OPEN and OPENDIR answer ENOSYS ("zero-message opens"):
the kernel then opens without asking and reads by inode with fh 0.

Run as a script it mounts itself (for the tests' subprocesses):
``python -m tests.fuse.memfs MOUNTPOINT [--zero-open] [--debug] [--files N] [-o OPT,...]``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable

import trio

from layerfs.fuse.api import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
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

TIMEOUT = 300.0


@dataclass
class Node:
    attributes: Attributes
    data: bytearray = field(default_factory=bytearray)
    target: bytes = b""
    children: dict[bytes, int] = field(default_factory=dict)
    parent: int = ROOT_INODE
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    backing: str | None = None
    """A file on disk holding the data (read with pread, or passed through)."""


class MemFS:
    """Everything in dicts; one trio loop, so no locks."""

    def __init__(self, *, zero_open: bool = False) -> None:
        self.zero_open = zero_open
        self.nodes: dict[int, Node] = {}
        self.next_ino = ROOT_INODE
        self.next_fh = 1
        self.notifier: Notifier | None = None
        self.passthrough = False
        """Open files backed on disk with FUSE passthrough (Opened.backing_fd)."""
        self.open_fds: dict[int, int] = {}
        self.blocked = trio.Event()
        """Reading a file named "block" waits on this (the INTERRUPT test)."""
        # Owned by whoever serves it, so a normal user's mount is writable by that user.
        self.owner = (os.getuid(), os.getgid())
        root = self._new(stat.S_IFDIR | 0o755, *self.owner)
        root.attributes.nlink = 2
        root.parent = ROOT_INODE

    def _new(self, mode: int, uid: int, gid: int, rdev: int = 0) -> Node:
        now = time.time_ns()
        ino = self.next_ino
        self.next_ino += 1
        node = Node(Attributes(ino=ino, mode=mode, nlink=1, uid=uid, gid=gid, rdev=rdev, size=0,
                               blocks=0, atime_ns=now, mtime_ns=now, ctime_ns=now))
        self.nodes[ino] = node
        return node

    def _node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _dir(self, ino: int) -> Node:
        node = self._node(ino)
        if not stat.S_ISDIR(node.attributes.mode):
            raise FUSEError(errno.ENOTDIR)
        return node

    timeout = TIMEOUT

    def _entry(self, node: Node) -> Entry:
        return Entry(node.attributes, self.timeout, self.timeout)

    def _touch(self, node: Node) -> None:
        node.attributes.mtime_ns = node.attributes.ctime_ns = time.time_ns()

    def add_file(self, parent: int, name: bytes, data: bytes = b"", mode: int = 0o644) -> int:
        """Build the tree before mounting (tests and the --files option)."""
        node = self._new(stat.S_IFREG | mode, *self.owner)
        node.data[:] = data
        node.attributes.size = len(data)
        self._link_into(parent, name, node)
        return node.attributes.ino

    def add_backed_file(self, parent: int, name: bytes, path: str) -> int:
        """A read-only file whose data is the file at ``path``."""
        node = self._new(stat.S_IFREG | 0o444, *self.owner)
        node.backing = path
        node.attributes.size = os.stat(path).st_size
        node.attributes.blocks = (node.attributes.size + 511) // 512
        self._link_into(parent, name, node)
        return node.attributes.ino

    def add_dir(self, parent: int, name: bytes) -> int:
        node = self._new(stat.S_IFDIR | 0o755, *self.owner)
        node.attributes.nlink = 2
        self._link_into(parent, name, node)
        self.nodes[parent].attributes.nlink += 1
        return node.attributes.ino

    def _link_into(self, parent: int, name: bytes, node: Node) -> None:
        directory = self._dir(parent)
        if name in directory.children:
            raise FUSEError(errno.EEXIST)
        directory.children[name] = node.attributes.ino
        node.parent = parent
        self._touch(directory)

    # api.Operations

    def init(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def lookup(self, parent: int, name: bytes, ctx: Context) -> Entry:
        directory = self._dir(parent)
        if name == b".":
            return self._entry(directory)
        if name == b"..":
            return self._entry(self._node(directory.parent))
        ino = directory.children.get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        return self._entry(self.nodes[ino])

    async def forget(self, inodes: Iterable[tuple[int, int]]) -> None:
        pass

    async def getattr(self, ino: int, ctx: Context) -> Entry:
        return self._entry(self._node(ino))

    async def setattr(self, ino: int, changes: AttrChanges, fh: int | None, ctx: Context) -> Entry:
        node = self._node(ino)
        a = node.attributes
        if changes.mode is not None:
            a.mode = stat.S_IFMT(a.mode) | stat.S_IMODE(changes.mode)
        if changes.uid is not None:
            a.uid = changes.uid
        if changes.gid is not None:
            a.gid = changes.gid
        if changes.size is not None:
            del node.data[changes.size:]
            node.data.extend(bytes(changes.size - len(node.data)))
            a.size = changes.size
            a.mtime_ns = time.time_ns()
        if changes.atime_ns is not None:
            a.atime_ns = changes.atime_ns
        if changes.mtime_ns is not None:
            a.mtime_ns = changes.mtime_ns
        a.ctime_ns = changes.ctime_ns if changes.ctime_ns is not None else time.time_ns()
        return self._entry(node)

    async def readlink(self, ino: int, ctx: Context) -> bytes:
        node = self._node(ino)
        if not stat.S_ISLNK(node.attributes.mode):
            raise FUSEError(errno.EINVAL)
        return node.target

    async def statfs(self, ino: int, ctx: Context) -> FsStats:
        return FsStats(bsize=4096, frsize=4096, blocks=1 << 20, bfree=1 << 19, bavail=1 << 19,
                       files=1 << 20, ffree=(1 << 20) - len(self.nodes), namemax=255)

    async def getxattr(self, ino: int, name: bytes, ctx: Context) -> bytes:
        try:
            return self._node(ino).xattrs[name]
        except KeyError:
            raise FUSEError(errno.ENODATA) from None

    async def listxattr(self, ino: int, ctx: Context) -> list[bytes]:
        return list(self._node(ino).xattrs)

    async def setxattr(self, ino: int, name: bytes, value: bytes, flags: int, ctx: Context) -> None:
        xattrs = self._node(ino).xattrs
        if flags & os.XATTR_CREATE and name in xattrs:
            raise FUSEError(errno.EEXIST)
        if flags & os.XATTR_REPLACE and name not in xattrs:
            raise FUSEError(errno.ENODATA)
        xattrs[name] = bytes(value)

    async def removexattr(self, ino: int, name: bytes, ctx: Context) -> None:
        if self._node(ino).xattrs.pop(name, None) is None:
            raise FUSEError(errno.ENODATA)

    async def opendir(self, ino: int, ctx: Context) -> Opened:
        self._dir(ino)
        if self.zero_open:
            raise FUSEError(errno.ENOSYS)
        return Opened(fh=0, keep_cache=True, cache_dir=True)

    async def readdir(self, ino: int, fh: int, offset: int, plus: bool, add: AddDirEntry) -> None:
        directory = self._dir(ino)
        listing = [(b".", ino), (b"..", directory.parent), *directory.children.items()]
        for index in range(offset, len(listing)):
            name, child = listing[index]
            if not add(name, self._entry(self.nodes[child]), index + 1):
                return

    async def releasedir(self, ino: int, fh: int) -> None:
        pass

    async def fsyncdir(self, ino: int, fh: int, datasync: bool) -> None:
        pass

    async def open(self, ino: int, flags: int, ctx: Context) -> Opened:
        node = self._node(ino)
        if stat.S_ISDIR(node.attributes.mode):
            raise FUSEError(errno.EISDIR)
        if self.zero_open and node.backing is None:
            raise FUSEError(errno.ENOSYS)
        fh = self.next_fh
        self.next_fh += 1
        if node.backing is None:
            return Opened(fh=fh, keep_cache=True)
        fd = os.open(node.backing, os.O_RDONLY | os.O_CLOEXEC)
        self.open_fds[fh] = fd
        return Opened(fh=fh, keep_cache=True, backing_fd=fd if self.passthrough else None)

    async def read(self, ino: int, fh: int, offset: int, size: int) -> bytes:
        node = self._node(ino)
        if node.backing is not None:
            return await trio.to_thread.run_sync(os.pread, self.open_fds[fh], size, offset)
        if node.data[:5] == b"block":
            await self.blocked.wait()
        return bytes(node.data[offset:offset + size])

    async def write(self, ino: int, fh: int, offset: int, data: bytes | memoryview) -> int:
        node = self._node(ino)
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:offset + len(data)] = data
        node.attributes.size = len(node.data)
        self._touch(node)
        return len(data)

    async def flush(self, ino: int, fh: int) -> None:
        pass

    async def release(self, ino: int, fh: int) -> None:
        fd = self.open_fds.pop(fh, None)
        if fd is not None:
            os.close(fd)

    async def fsync(self, ino: int, fh: int, datasync: bool) -> None:
        pass

    async def fallocate(self, ino: int, fh: int, offset: int, length: int, mode: int) -> None:
        if mode:
            raise FUSEError(errno.EOPNOTSUPP)
        node = self._node(ino)
        end = offset + length
        if end > len(node.data):
            node.data.extend(bytes(end - len(node.data)))
            node.attributes.size = end

    async def lseek(self, ino: int, fh: int, offset: int, whence: int) -> int:
        size = len(self._node(ino).data)
        if offset >= size:
            raise FUSEError(errno.ENXIO)
        return offset if whence == os.SEEK_DATA else size

    async def copy_file_range(self, ino_in: int, fh_in: int, offset_in: int, ino_out: int,
                              fh_out: int, offset_out: int, length: int, flags: int) -> int:
        data = bytes(self._node(ino_in).data[offset_in:offset_in + length])
        return await self.write(ino_out, fh_out, offset_out, data)

    async def create(self, parent: int, name: bytes, mode: int, flags: int,
                     ctx: Context) -> tuple[Opened, Entry]:
        node = self._new(stat.S_IFREG | stat.S_IMODE(mode), ctx.uid, ctx.gid)
        self._link_into(parent, name, node)
        fh = self.next_fh
        self.next_fh += 1
        return Opened(fh=fh), self._entry(node)

    async def mkdir(self, parent: int, name: bytes, mode: int, ctx: Context) -> Entry:
        node = self._new(stat.S_IFDIR | stat.S_IMODE(mode), ctx.uid, ctx.gid)
        node.attributes.nlink = 2
        self._link_into(parent, name, node)
        self.nodes[parent].attributes.nlink += 1
        return self._entry(node)

    async def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Context) -> Entry:
        node = self._new(mode, ctx.uid, ctx.gid, rdev)
        self._link_into(parent, name, node)
        return self._entry(node)

    async def symlink(self, parent: int, name: bytes, target: bytes, ctx: Context) -> Entry:
        node = self._new(stat.S_IFLNK | 0o777, ctx.uid, ctx.gid)
        node.target = target
        node.attributes.size = len(target)
        self._link_into(parent, name, node)
        return self._entry(node)

    async def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Context) -> Entry:
        node = self._node(ino)
        directory = self._dir(new_parent)
        if new_name in directory.children:
            raise FUSEError(errno.EEXIST)
        directory.children[new_name] = ino
        node.attributes.nlink += 1
        return self._entry(node)

    async def unlink(self, parent: int, name: bytes, ctx: Context) -> None:
        directory = self._dir(parent)
        ino = directory.children.get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        if stat.S_ISDIR(self.nodes[ino].attributes.mode):
            raise FUSEError(errno.EISDIR)
        del directory.children[name]
        self.nodes[ino].attributes.nlink -= 1
        self._touch(directory)

    async def rmdir(self, parent: int, name: bytes, ctx: Context) -> None:
        directory = self._dir(parent)
        ino = directory.children.get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        if self._dir(ino).children:
            raise FUSEError(errno.ENOTEMPTY)
        del directory.children[name]
        directory.attributes.nlink -= 1
        del self.nodes[ino]
        self._touch(directory)

    async def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes,
                     flags: int, ctx: Context) -> None:
        source, target = self._dir(parent), self._dir(new_parent)
        ino = source.children.get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        existing = target.children.get(new_name)
        if flags & RENAME_NOREPLACE and existing is not None:
            raise FUSEError(errno.EEXIST)
        if flags & RENAME_EXCHANGE:
            if existing is None:
                raise FUSEError(errno.ENOENT)
            source.children[name], target.children[new_name] = existing, ino
            return
        if existing is not None and stat.S_ISDIR(self.nodes[existing].attributes.mode):
            if self.nodes[existing].children:
                raise FUSEError(errno.ENOTEMPTY)
        del source.children[name]
        target.children[new_name] = ino
        self.nodes[ino].parent = new_parent
        self._touch(source)
        self._touch(target)


def build_tree(fs: MemFS, count: int) -> None:
    """``count`` small files spread over directories of 100."""
    for d in range((count + 99) // 100):
        directory = fs.add_dir(ROOT_INODE, b"d%04d" % d)
        for f in range(min(100, count - d * 100)):
            fs.add_file(directory, b"f%03d" % f, b"x" * (f % 7))


def main(argv: list[str] | None = None) -> int:
    from layerfs.errors import MountError
    from layerfs.fuse.engine import NativeEngine

    parser = argparse.ArgumentParser(prog="memfs")
    parser.add_argument("mountpoint")
    parser.add_argument("--zero-open", action="store_true")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--files", type=int, default=0)
    parser.add_argument("--backed", help="a file 'backed' whose data is this file on disk")
    parser.add_argument("--passthrough", action="store_true")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help="entry and attribute timeout (0: every stat is a request)")
    parser.add_argument("--posix-acl", action="store_true")
    parser.add_argument("--readdirplus-auto", action="store_true")
    parser.add_argument("--daemon", action="store_true",
                        help="fork after mounting (as layerfs does): the parent prints the "
                             "child's pid and exits, the child serves")
    parser.add_argument("-o", dest="options", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(name)s %(levelname)s: %(message)s")
    fs = MemFS(zero_open=args.zero_open)
    fs.timeout = args.timeout
    fs.add_file(ROOT_INODE, b"hello", b"hello world\n")
    build_tree(fs, args.files)
    if args.backed:
        fs.add_backed_file(ROOT_INODE, b"backed", args.backed)
    fs.passthrough = args.passthrough
    engine = NativeEngine(debug=args.debug, passthrough=args.passthrough,
                          posix_acl=args.posix_acl, readdirplus_auto=args.readdirplus_auto)
    options = {"fsname=memfs", "subtype=memfs", "default_permissions"}
    options |= {option for option in args.options.split(",") if option}
    try:
        engine.mount(fs, args.mountpoint, options)
    except MountError as exc:
        print(f"memfs: {exc}", file=sys.stderr)
        return 1
    if args.daemon:
        child = os.fork()
        if child:
            print(child, flush=True)
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    else:
        print("mounted", flush=True)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        engine.terminate()
                        return
            nursery.start_soon(on_signal)
            await engine.serve()
            nursery.cancel_scope.cancel()

    try:
        trio.run(serve)
    finally:
        engine.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
