"""One FUSE connection: the read loop on the device, INIT, and request dispatch.

A :class:`Session` owns a descriptor that speaks the kernel protocol
(``/dev/fuse`` after a mount, or one end of a SOCK_SEQPACKET pair in the
tests). Worker tasks on one trio loop take turns at reading; the one that
read a request serves it at once while another reads the next, so a slow
request (a layer read in a worker thread) holds up no other and no task is
created per request. Decoding a request and encoding its reply is here; what
a request means is :mod:`layerfs.fuse.api`'s ``Operations``, called with
plain values.

Failures are answered, never fatal: a FUSEError is its errno, any other
exception a logged EIO, a malformed or truncated request a logged EIO, an
opcode we do not know ENOSYS.

Longer than 500 lines because it holds the protocol's table: besides the loop
(about 330 lines), one handler per opcode (about 45, a few lines each: unpack
the body, call ``Operations``, pack the reply), all on the session's state
(the operations, passthrough, the notifier).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import time
import types
from typing import Any, Awaitable, Callable

import trio

from . import abi
from .api import AttrChanges, Context, Entry, FUSEError, Operations
from .notify import Notifier

log = logging.getLogger("layerfs.fuse")

MAX_WRITE = 1 << 20
MAX_PAGES = MAX_WRITE // 4096
MAX_BACKGROUND = 64
CONGESTION_THRESHOLD = 48
BUFFER_SIZE = MAX_WRITE + 4096
"""Room for the largest request: a WRITE of max_write bytes and its headers."""
MAX_WORKERS = 64
"""Requests served at once at most (the kernel's max_background bounds the
asynchronous ones; each waiting caller adds one synchronous request)."""

WANTED_FLAGS = (abi.ASYNC_READ | abi.BIG_WRITES | abi.DO_READDIRPLUS | abi.PARALLEL_DIROPS
                | abi.CACHE_SYMLINKS | abi.NO_OPEN_SUPPORT | abi.NO_OPENDIR_SUPPORT
                | abi.EXPORT_SUPPORT | abi.MAX_PAGES | abi.AUTO_INVAL_DATA | abi.ASYNC_DIO
                | abi.INIT_EXT)
"""Capabilities asked of the kernel when it offers them. Left out on purpose:
ATOMIC_O_TRUNC (with zero-message opens the kernel would then drop the
truncation: it trusts an OPEN it never sent), HANDLE_KILLPRIV(_V2) (the kernel
clearing set-id bits itself is always right), WRITEBACK_CACHE, POSIX_LOCKS and
FLOCK_LOCKS (locks stay local), POSIX_ACL, READDIRPLUS_AUTO (always plus: a
walk that lists gets every entry's lookup for free)."""

EARLY_INTERRUPTS = 64

OPEN_FILE_OPCODES = frozenset({
    abi.INIT, abi.FORGET, abi.BATCH_FORGET, abi.INTERRUPT, abi.DESTROY, abi.READ, abi.WRITE,
    abi.FSYNC, abi.FLUSH, abi.RELEASE, abi.READDIR, abi.READDIRPLUS, abi.FSYNCDIR,
    abi.RELEASEDIR, abi.LSEEK})
"""Requests on what is already open (or no one's): served to anyone under
allow_root, since an open descriptor may have been handed to another user."""

Handler = Callable[[int, bytes, int, int, int], Awaitable[Any]]


@types.coroutine
def _resume(coro: Any, trap: Any) -> Any:
    """Go on running ``coro`` in this task after its first step, taken by hand,
    yielded ``trap`` (what ``await coro`` would have done from the start)."""
    while True:
        try:
            sent = yield trap
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                trap = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                trap = coro.send(sent)
            except StopIteration as done:
                return done.value


class MalformedRequest(Exception):
    """A request shorter than its opcode's layout or with an unterminated name."""


class Session:
    """Serve ``ops`` on the FUSE descriptor ``fd`` until unmounted or terminated."""

    def __init__(self, fd: int, ops: Operations, *, debug: bool = False,
                 passthrough: bool = False, posix_acl: bool = False,
                 readdirplus_auto: bool = False, allowed_uids: frozenset[int] | None = None) -> None:
        self.fd = fd
        self.want_posix_acl = posix_acl
        self.want_readdirplus_auto = readdirplus_auto
        self.allowed_uids = allowed_uids
        """With allow_root: the only callers served, but on files already open."""
        self.ops = ops
        self.debug = debug or log.isEnabledFor(logging.DEBUG)
        self.want_passthrough = passthrough
        self.passthrough = False
        self.proto_minor = 0
        self.flags = 0
        self.notifier = Notifier(fd)
        self._nursery: trio.Nursery | None = None
        self._workers = 0
        self._idle: list[trio.lowlevel.Task] = []
        self._reader_busy = True  # the first worker starts holding the role
        self._active: dict[int, trio.CancelScope] = {}
        self._early_interrupts: dict[int, float] = {}
        self._backing_ids: dict[tuple[int, int], int] = {}
        self._scope: trio.CancelScope | None = None
        self._terminated = False
        self._setxattr_in = abi.SETXATTR_IN
        self._handlers: dict[int, Handler] = {
            abi.LOOKUP: self._lookup, abi.GETATTR: self._getattr, abi.SETATTR: self._setattr,
            abi.READLINK: self._readlink, abi.SYMLINK: self._symlink, abi.MKNOD: self._mknod,
            abi.MKDIR: self._mkdir, abi.UNLINK: self._unlink, abi.RMDIR: self._rmdir,
            abi.RENAME: self._rename, abi.RENAME2: self._rename2, abi.LINK: self._link,
            abi.OPEN: self._open, abi.READ: self._read, abi.WRITE: self._write,
            abi.STATFS: self._statfs, abi.RELEASE: self._release, abi.FSYNC: self._fsync,
            abi.SETXATTR: self._setxattr, abi.GETXATTR: self._getxattr,
            abi.LISTXATTR: self._listxattr, abi.REMOVEXATTR: self._removexattr,
            abi.FLUSH: self._flush, abi.OPENDIR: self._opendir, abi.READDIR: self._readdir,
            abi.READDIRPLUS: self._readdirplus, abi.RELEASEDIR: self._releasedir,
            abi.FSYNCDIR: self._fsyncdir, abi.CREATE: self._create,
            abi.FALLOCATE: self._fallocate, abi.LSEEK: self._lseek,
            abi.COPY_FILE_RANGE: self._copy_file_range,
        }

    # The loop. Workers take turns at reading: the one that read a request hands
    # the reading role to an idle worker (or a new one) and serves the request
    # itself, at once; a finished worker parks until the role comes back to it.
    # A request costs no task creation, and a slow one holds up no other.

    async def run(self) -> None:
        """Read and serve requests until the kernel reports the mount gone
        (ENODEV, or end of file on a socket), DESTROY or :meth:`terminate`."""
        os.set_blocking(self.fd, False)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._scope = nursery.cancel_scope
                if self._terminated:
                    nursery.cancel_scope.cancel()
                self._workers = 1
                nursery.start_soon(self._worker, True)
        finally:
            self.notifier.stop()
            self._scope = None

    def terminate(self) -> None:
        """Stop serving (from a trio task of the same run, e.g. on SIGTERM)."""
        self._terminated = True
        if self._scope is not None:
            self._scope.cancel()

    async def _worker(self, reading: bool) -> None:
        """Read when given the role (``reading``), serve what was read, repeat."""
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        while True:
            if not reading:
                if self._reader_busy:
                    await self._park()  # returns holding the role
                self._reader_busy = True
            size = await self._receive(buffer)
            if size == 0:
                self._end()
                return
            self._pass_reading_role()
            reading = False
            if not await self._handle(view, size):
                self._end()
                return

    async def _receive(self, buffer: bytearray) -> int:
        """One request into ``buffer``: its size, 0 when the connection is over."""
        fd = self.fd
        while True:
            try:
                return os.readv(fd, [buffer])
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue  # the request was interrupted before we read it
                if exc.errno == errno.ENODEV:
                    log.debug("the kernel ended the connection (unmounted)")
                    return 0
                raise

    def _pass_reading_role(self) -> None:
        if self._idle:
            trio.lowlevel.reschedule(self._idle.pop())
        elif self._workers < MAX_WORKERS:
            self._workers += 1
            assert self._nursery is not None
            self._nursery.start_soon(self._worker, True)
        else:
            self._reader_busy = False  # all busy: the first to finish reads next

    async def _park(self) -> None:
        task = trio.lowlevel.current_task()
        self._idle.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _end(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _handle(self, view: memoryview, size: int) -> bool:
        """Serve one request; False when the connection is over (DESTROY)."""
        if size < abi.IN_HEADER.size:
            log.error("malformed request: %d bytes, shorter than a header; dropped", size)
            return True
        length, opcode, unique, nodeid, uid, gid, pid, _, _ = abi.IN_HEADER.unpack_from(view)
        if length != size:
            log.error("malformed request %s (unique %d): header says %d bytes, read %d",
                      abi.OPCODE_NAMES.get(opcode, opcode), unique, length, size)
            self._reply_error(unique, errno.EIO, opcode, nodeid)
            return True
        if self.allowed_uids is not None and uid not in self.allowed_uids \
                and opcode not in OPEN_FILE_OPCODES:
            self._reply_error(unique, errno.EACCES, opcode, nodeid)
            return True
        handler = self._handlers.get(opcode)
        if handler is not None:
            # WRITE's data is served from our buffer, untouched until we reply.
            body: Any = view[abi.IN_HEADER.size:size] if opcode == abi.WRITE \
                else bytes(view[abi.IN_HEADER.size:size])
            await self._serve(handler, opcode, unique, nodeid, body, uid, gid, pid)
            return True
        body = bytes(view[abi.IN_HEADER.size:size])
        if opcode == abi.FORGET:
            await self._forget(nodeid, body)
        elif opcode == abi.BATCH_FORGET:
            await self._batch_forget(body)
        elif opcode == abi.INTERRUPT:
            self._interrupt(body)
        elif opcode == abi.INIT:
            self._init(unique, body)
        elif opcode == abi.DESTROY:
            self._reply(unique, 0, b"", opcode, nodeid)
            return False
        else:
            # ACCESS (default_permissions decides), locks (local), IOCTL, POLL,
            # BMAP, SYNCFS, TMPFILE, STATX and anything newer than us.
            self._reply_error(unique, errno.ENOSYS, opcode, nodeid)
        return True

    async def _serve(self, handler: Handler, opcode: int, unique: int, nodeid: int, body: Any,
                     uid: int, gid: int, pid: int) -> None:
        error = 0
        payload: Any = b""
        interrupted = False
        try:
            # Most requests are answered from memory without ever waiting: take
            # the handler's first step by hand, and only a request that does
            # wait gets a cancel scope an INTERRUPT can reach.
            coro = handler(nodeid, body, uid, gid, pid)
            try:
                trap = coro.send(None)
            except StopIteration as done:
                payload = done.value
            else:
                scope = trio.CancelScope()
                self._active[unique] = scope
                if self._early_interrupts and self._early_interrupts.pop(unique, None):
                    scope.cancel()
                try:
                    with scope:
                        payload = await _resume(coro, trap)
                finally:
                    del self._active[unique]
                interrupted = scope.cancelled_caught
        except FUSEError as exc:
            error = exc.errno
        except (struct.error, MalformedRequest) as exc:
            log.error("malformed request %s (unique %d, nodeid %d): %s",
                      abi.OPCODE_NAMES[opcode], unique, nodeid, exc)
            error = errno.EIO
        except Exception:
            log.exception("%s (nodeid %d) failed", abi.OPCODE_NAMES[opcode], nodeid)
            error = errno.EIO
        if interrupted:
            error = errno.EINTR
        if error:
            self._reply_error(unique, error, opcode, nodeid)
        elif payload is not None:
            self._reply(unique, 0, payload, opcode, nodeid)

    # Replies

    def _reply(self, unique: int, error: int, payload: Any, opcode: int, nodeid: int) -> None:
        parts = list(payload) if isinstance(payload, (list, tuple)) else [payload]
        length = abi.OUT_HEADER.size + sum(len(part) for part in parts)
        self._send([abi.OUT_HEADER.pack(length, -error, unique), *parts])
        if self.debug:
            log.debug("%s nodeid=%d unique=%d -> %s", abi.OPCODE_NAMES.get(opcode, opcode),
                      nodeid, unique, errno.errorcode.get(error, error) if error else 0)

    def _reply_error(self, unique: int, error: int, opcode: int, nodeid: int) -> None:
        self._reply(unique, error, (), opcode, nodeid)

    def _send(self, parts: list) -> None:
        try:
            os.writev(self.fd, parts)
        except OSError as exc:
            # ENOENT: the request was interrupted and is gone; ENODEV: unmounted.
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                log.error("cannot write a reply to the FUSE device: %s", exc.strerror)

    # Connection-level requests

    def _init(self, unique: int, body: bytes) -> None:
        major, minor, max_readahead, flags = struct.unpack_from("<IIII", body)
        if len(body) >= abi.INIT_IN.size:
            flags |= abi.INIT_IN.unpack_from(body)[4] << 32
        if major > abi.KERNEL_VERSION:
            # Tell the kernel our major version; it sends INIT again.
            self._reply(unique, 0, struct.pack("<II", abi.KERNEL_VERSION, abi.KERNEL_MINOR_VERSION),
                        abi.INIT, 0)
            return
        if major < abi.KERNEL_VERSION or minor < 31:
            log.error("kernel FUSE protocol %d.%d is too old (7.31 needed)", major, minor)
            self._reply_error(unique, errno.EPROTO, abi.INIT, 0)
            return
        wanted = WANTED_FLAGS
        if self.want_passthrough:
            wanted |= abi.PASSTHROUGH
        if self.want_posix_acl:
            wanted |= abi.POSIX_ACL
        if self.want_readdirplus_auto:
            wanted |= abi.READDIRPLUS_AUTO
        granted = flags & wanted
        self.proto_minor = min(minor, abi.KERNEL_MINOR_VERSION)
        self.flags = granted
        self.passthrough = bool(granted & abi.PASSTHROUGH)
        if granted & abi.SETXATTR_EXT:
            self._setxattr_in = abi.SETXATTR_IN_EXT
        reply = abi.INIT_OUT.pack(
            abi.KERNEL_VERSION, self.proto_minor, max_readahead, granted & 0xFFFFFFFF,
            MAX_BACKGROUND, CONGESTION_THRESHOLD, MAX_WRITE, 1, MAX_PAGES, 0, granted >> 32,
            1 if self.passthrough else 0, 0)
        self._reply(unique, 0, reply, abi.INIT, 0)
        log.debug("INIT: kernel %d.%d, flags granted %#x, passthrough %s", major, minor, granted,
                  "on" if self.passthrough else "off")
        self.notifier.start()
        try:
            self.ops.init(self.notifier)
        except Exception:
            log.exception("the filesystem's init failed")

    async def _forget(self, nodeid: int, body: bytes) -> None:
        try:
            (count,) = abi.FORGET_IN.unpack_from(body)
        except struct.error:
            log.error("malformed FORGET of nodeid %d: dropped", nodeid)
            return
        if self.debug:
            log.debug("FORGET nodeid=%d", nodeid)
        await self._call_forget([(nodeid, count)])

    async def _batch_forget(self, body: bytes) -> None:
        try:
            count, _ = abi.BATCH_FORGET_IN.unpack_from(body)
            items = [abi.FORGET_ONE.unpack_from(body, abi.BATCH_FORGET_IN.size + i * 16)
                     for i in range(count)]
        except struct.error:
            log.error("malformed BATCH_FORGET: dropped")
            return
        if self.debug:
            log.debug("BATCH_FORGET count=%d", count)
        await self._call_forget(items)

    async def _call_forget(self, items: list[tuple[int, int]]) -> None:
        try:
            await self.ops.forget(items)
        except Exception:
            log.exception("FORGET failed")

    def _interrupt(self, body: bytes) -> None:
        try:
            (target,) = abi.INTERRUPT_IN.unpack_from(body)
        except struct.error:
            log.error("malformed INTERRUPT: dropped")
            return
        if self.debug:
            log.debug("INTERRUPT of unique=%d", target)
        scope = self._active.get(target)
        if scope is not None:
            scope.cancel()
            return
        # Already answered, or (with several readers) not read yet: keep it a while.
        now = time.monotonic()
        if len(self._early_interrupts) >= EARLY_INTERRUPTS:
            self._early_interrupts = {u: t for u, t in self._early_interrupts.items()
                                      if now - t < 1.0}
            while len(self._early_interrupts) >= EARLY_INTERRUPTS:
                del self._early_interrupts[next(iter(self._early_interrupts))]
        self._early_interrupts[target] = now

    # Request handlers: decode, call the filesystem, encode.

    @staticmethod
    def _name(body: bytes, start: int = 0) -> bytes:
        end = body.find(b"\0", start)
        if end < 0:
            raise MalformedRequest("unterminated name")
        return body[start:end]

    @staticmethod
    def _two_names(body: bytes, start: int) -> tuple[bytes, bytes]:
        first = body.find(b"\0", start)
        second = body.find(b"\0", first + 1) if first >= 0 else -1
        if second < 0:
            raise MalformedRequest("unterminated name")
        return body[start:first], body[first + 1:second]

    async def _lookup(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        entry = await self.ops.lookup(nodeid, self._name(body), Context(uid, gid, pid))
        return abi.pack_entry(entry)

    async def _getattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        return abi.pack_attr(await self.ops.getattr(nodeid, Context(uid, gid, pid)))

    async def _setattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        (valid, _, fh, size, _, atime, mtime, ctime, atimensec, mtimensec, ctimensec, mode, _,
         new_uid, new_gid, _) = abi.SETATTR_IN.unpack_from(body)
        changes = AttrChanges()
        if valid & abi.FATTR_MODE:
            changes.mode = mode
        if valid & abi.FATTR_UID:
            changes.uid = new_uid
        if valid & abi.FATTR_GID:
            changes.gid = new_gid
        if valid & abi.FATTR_SIZE:
            changes.size = size
        if valid & abi.FATTR_ATIME_NOW:
            changes.atime_ns = time.time_ns()
        elif valid & abi.FATTR_ATIME:
            changes.atime_ns = atime * 1_000_000_000 + atimensec
        if valid & abi.FATTR_MTIME_NOW:
            changes.mtime_ns = time.time_ns()
        elif valid & abi.FATTR_MTIME:
            changes.mtime_ns = mtime * 1_000_000_000 + mtimensec
        if valid & abi.FATTR_CTIME:
            changes.ctime_ns = ctime * 1_000_000_000 + ctimensec
        handle = fh if valid & abi.FATTR_FH else None
        entry = await self.ops.setattr(nodeid, changes, handle, Context(uid, gid, pid))
        return abi.pack_attr(entry)

    async def _readlink(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        return await self.ops.readlink(nodeid, Context(uid, gid, pid))

    async def _symlink(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        name, target = self._two_names(body, 0)
        return abi.pack_entry(await self.ops.symlink(nodeid, name, target, Context(uid, gid, pid)))

    async def _mknod(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        mode, rdev, umask, _ = abi.MKNOD_IN.unpack_from(body)
        name = self._name(body, abi.MKNOD_IN.size)
        entry = await self.ops.mknod(nodeid, name, mode, rdev, Context(uid, gid, pid, umask))
        return abi.pack_entry(entry)

    async def _mkdir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        mode, umask = abi.MKDIR_IN.unpack_from(body)
        name = self._name(body, abi.MKDIR_IN.size)
        return abi.pack_entry(await self.ops.mkdir(nodeid, name, mode, Context(uid, gid, pid, umask)))

    async def _unlink(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        await self.ops.unlink(nodeid, self._name(body), Context(uid, gid, pid))
        return b""

    async def _rmdir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        await self.ops.rmdir(nodeid, self._name(body), Context(uid, gid, pid))
        return b""

    async def _rename(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        (new_parent,) = abi.RENAME_IN.unpack_from(body)
        name, new_name = self._two_names(body, abi.RENAME_IN.size)
        await self.ops.rename(nodeid, name, new_parent, new_name, 0, Context(uid, gid, pid))
        return b""

    async def _rename2(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        new_parent, flags, _ = abi.RENAME2_IN.unpack_from(body)
        name, new_name = self._two_names(body, abi.RENAME2_IN.size)
        await self.ops.rename(nodeid, name, new_parent, new_name, flags, Context(uid, gid, pid))
        return b""

    async def _link(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        (old,) = abi.LINK_IN.unpack_from(body)
        name = self._name(body, abi.LINK_IN.size)
        return abi.pack_entry(await self.ops.link(old, nodeid, name, Context(uid, gid, pid)))

    async def _open(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        flags, _ = abi.OPEN_IN.unpack_from(body)
        opened = await self.ops.open(nodeid, flags, Context(uid, gid, pid))
        return abi.pack_open(opened, self._backing_id(nodeid, opened))

    def _backing_id(self, nodeid: int, opened: Any) -> int:
        """Register an Opened's backing file for passthrough: its id, or 0."""
        if not self.passthrough or opened.backing_fd is None:
            return 0
        backing_map = bytearray(abi.BACKING_MAP.pack(opened.backing_fd, 0, 0))
        try:
            # With a mutable buffer ioctl() returns the call's result: the id.
            backing_id = fcntl.ioctl(self.fd, abi.DEV_IOC_BACKING_OPEN, backing_map, True)
        except OSError as exc:
            log.debug("passthrough refused for nodeid %d: %s", nodeid, exc.strerror)
            return 0
        self._backing_ids[(nodeid, opened.fh)] = backing_id
        return backing_id

    async def _read(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> Any:
        fh, offset, size, _, _, _, _ = abi.READ_IN.unpack_from(body)
        data = await self.ops.read(nodeid, fh, offset, size)
        # More than asked would make the kernel refuse the whole reply.
        return data if len(data) <= size else memoryview(data)[:size]

    async def _write(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, offset, size, _, _, _, _ = abi.WRITE_IN.unpack_from(body)
        data = memoryview(body)[abi.WRITE_IN.size:abi.WRITE_IN.size + size]
        if len(data) != size:
            raise MalformedRequest(f"WRITE of {size} bytes carries {len(data)}")
        written = await self.ops.write(nodeid, fh, offset, data)
        return abi.WRITE_OUT.pack(written, 0)

    async def _statfs(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        return abi.pack_statfs(await self.ops.statfs(nodeid, Context(uid, gid, pid)))

    async def _release(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, _, _, _ = abi.RELEASE_IN.unpack_from(body)
        backing_id = self._backing_ids.pop((nodeid, fh), None)
        if backing_id is not None:
            try:
                fcntl.ioctl(self.fd, abi.DEV_IOC_BACKING_CLOSE,
                            bytearray(struct.pack("<I", backing_id)), True)
            except OSError as exc:
                log.debug("closing backing id %d: %s", backing_id, exc.strerror)
        await self.ops.release(nodeid, fh)
        return b""

    async def _fsync(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, flags, _ = abi.FSYNC_IN.unpack_from(body)
        await self.ops.fsync(nodeid, fh, bool(flags & abi.FSYNC_FDATASYNC))
        return b""

    async def _setxattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        layout = self._setxattr_in
        size, flags = layout.unpack_from(body)[:2]
        name = self._name(body, layout.size)
        start = layout.size + len(name) + 1
        value = body[start:start + size]
        if len(value) != size:
            raise MalformedRequest(f"SETXATTR value of {size} bytes carries {len(value)}")
        await self.ops.setxattr(nodeid, name, value, flags, Context(uid, gid, pid))
        return b""

    async def _getxattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        size, _ = abi.GETXATTR_IN.unpack_from(body)
        name = self._name(body, abi.GETXATTR_IN.size)
        value = await self.ops.getxattr(nodeid, name, Context(uid, gid, pid))
        return self._sized(value, size)

    async def _listxattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        size, _ = abi.GETXATTR_IN.unpack_from(body)
        names = await self.ops.listxattr(nodeid, Context(uid, gid, pid))
        return self._sized(b"".join(name + b"\0" for name in names), size)

    @staticmethod
    def _sized(value: bytes, size: int) -> bytes:
        """An xattr reply: its size when asked with 0, ERANGE when it would not fit."""
        if size == 0:
            return abi.GETXATTR_OUT.pack(len(value), 0)
        if len(value) > size:
            raise FUSEError(errno.ERANGE)
        return value

    async def _removexattr(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        await self.ops.removexattr(nodeid, self._name(body), Context(uid, gid, pid))
        return b""

    async def _flush(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, _, _, _ = abi.FLUSH_IN.unpack_from(body)
        await self.ops.flush(nodeid, fh)
        return b""

    async def _opendir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        opened = await self.ops.opendir(nodeid, Context(uid, gid, pid))
        return abi.pack_open(opened)

    async def _readdir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        return await self._list(nodeid, body, False)

    async def _readdirplus(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        return await self._list(nodeid, body, True)

    async def _list(self, nodeid: int, body: bytes, plus: bool) -> bytes:
        fh, offset, size, _, _, _, _ = abi.READ_IN.unpack_from(body)
        listing = bytearray()
        pack_dirent = abi.pack_dirent
        pack_direntplus = abi.pack_direntplus
        dirent_size = abi.dirent_size

        def add(name: bytes, entry: Entry, next_offset: int) -> bool:
            if len(listing) + dirent_size(name, plus) > size:
                return False
            if plus:
                pack_direntplus(listing, name, entry, next_offset)
            else:
                attributes = entry.attributes
                pack_dirent(listing, name, attributes.ino, attributes.mode, next_offset)
            return True

        await self.ops.readdir(nodeid, fh, offset, plus, add)
        return bytes(listing)

    async def _releasedir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, _, _, _ = abi.RELEASE_IN.unpack_from(body)
        await self.ops.releasedir(nodeid, fh)
        return b""

    async def _fsyncdir(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, flags, _ = abi.FSYNC_IN.unpack_from(body)
        await self.ops.fsyncdir(nodeid, fh, bool(flags & abi.FSYNC_FDATASYNC))
        return b""

    async def _create(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> list:
        flags, mode, umask, _ = abi.CREATE_IN.unpack_from(body)
        name = self._name(body, abi.CREATE_IN.size)
        opened, entry = await self.ops.create(nodeid, name, mode, flags,
                                              Context(uid, gid, pid, umask))
        ino = entry.attributes.ino
        return [abi.pack_entry(entry), abi.pack_open(opened, self._backing_id(ino, opened))]

    async def _fallocate(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, offset, length, mode, _ = abi.FALLOCATE_IN.unpack_from(body)
        await self.ops.fallocate(nodeid, fh, offset, length, mode)
        return b""

    async def _lseek(self, nodeid: int, body: bytes, uid: int, gid: int, pid: int) -> bytes:
        fh, offset, whence, _ = abi.LSEEK_IN.unpack_from(body)
        return abi.LSEEK_OUT.pack(await self.ops.lseek(nodeid, fh, offset, whence))

    async def _copy_file_range(self, nodeid: int, body: bytes, uid: int, gid: int,
                               pid: int) -> bytes:
        fh_in, off_in, node_out, fh_out, off_out, length, flags = \
            abi.COPY_FILE_RANGE_IN.unpack_from(body)
        copied = await self.ops.copy_file_range(nodeid, fh_in, off_in, node_out, fh_out, off_out,
                                                length, flags)
        return abi.WRITE_OUT.pack(copied, 0)
