"""The protocol engine without a kernel: a Session serving memfs over a socket pair.

Each test plays the kernel (tests/fuse/kernel.py): it negotiates INIT, sends
requests byte for byte as <linux/fuse.h> lays them out and decodes the
replies; the session must answer every request, stay up after bad ones and
end when the connection does.
"""

from __future__ import annotations

import errno
import logging
import socket
import stat
from typing import Awaitable, Callable

import trio

from layerfs.fuse import abi
from layerfs.fuse.api import ROOT_INODE
from layerfs.fuse.session import MAX_PAGES, MAX_WRITE, WANTED_FLAGS, Session
from tests.fuse.kernel import FakeKernel, names, parse_dirents, read_in, unpack_entry
from tests.fuse.memfs import MemFS

Test = Callable[[FakeKernel, Session, MemFS], Awaitable[None]]


def serve(test: Test, *, fs: MemFS | None = None, init: bool = True, **options) -> Session:
    """Run ``test`` against a session serving ``fs``; the session must end with the connection."""
    fs = fs if fs is not None else _tree()

    async def main() -> Session:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        session = Session(ours.fileno(), fs, **options)
        kernel = FakeKernel(theirs)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.run)
                if init:
                    await kernel.init()
                await test(kernel, session, fs)
                theirs.close()  # end of file: the session's loop ends by itself
        ours.close()
        return session

    return trio.run(main)


def _tree() -> MemFS:
    fs = MemFS()
    fs.add_file(ROOT_INODE, b"hello", b"hello world\n")
    fs.add_file(ROOT_INODE, b"block", b"block: reading this waits")
    directory = fs.add_dir(ROOT_INODE, b"dir")
    for i in range(50):
        fs.add_file(directory, b"file-with-a-longish-name-%02d" % i, b"x" * i)
    return fs


def test_init_negotiates_what_both_sides_offer():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        (major, minor, readahead, flags, background, congestion, max_write, time_gran,
         max_pages, _, flags2, stack_depth, _) = await kernel.init()
        assert (major, minor) == (7, abi.KERNEL_MINOR_VERSION)
        assert readahead == 1 << 20
        assert flags | flags2 << 32 == WANTED_FLAGS
        assert (max_write, max_pages, time_gran) == (MAX_WRITE, MAX_PAGES, 1)
        assert background > congestion > 0
        assert stack_depth == 0  # no passthrough unless asked
        assert fs.notifier is session.notifier  # the filesystem got the notifier after INIT

    serve(test, init=False)


def test_init_grants_only_what_the_kernel_offers_and_passthrough_when_asked():
    offered = abi.ASYNC_READ | abi.DO_READDIRPLUS | abi.POSIX_LOCKS | abi.INIT_EXT | abi.PASSTHROUGH

    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        reply = await kernel.init(flags=offered, minor=40)
        flags, flags2, stack_depth = reply[3], reply[10], reply[11]
        assert flags | flags2 << 32 == offered & ~abi.POSIX_LOCKS
        assert reply[1] == 40
        assert stack_depth == 1 and session.passthrough

    serve(test, init=False, passthrough=True)


def test_lookup_and_getattr_replies_carry_the_attributes():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        error, payload = await kernel.call(abi.LOOKUP, names(b"hello"))
        assert error == 0
        fields = unpack_entry(payload)
        node = fs.nodes[fields[0]]
        assert fields[2] == 300 and fields[3] == 300  # entry and attr timeouts
        assert fields[6] == node.attributes.ino and fields[7] == len(b"hello world\n")
        assert fields[15] == stat.S_IFREG | 0o644
        assert fields[9] * 10**9 + fields[13] == node.attributes.mtime_ns

        error, payload = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0),
                                           nodeid=fields[0])
        assert error == 0 and abi.ATTR_OUT.unpack(payload)[3] == node.attributes.ino

        error, _ = await kernel.call(abi.LOOKUP, names(b"missing"))
        assert error == errno.ENOENT

    serve(test)


def test_an_unknown_opcode_is_answered_enosys_and_the_session_goes_on():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        for opcode in (999, abi.ACCESS, abi.GETLK, abi.IOCTL, abi.POLL, abi.SYNCFS):
            error, _ = await kernel.call(opcode, bytes(16))
            assert error == errno.ENOSYS, abi.OPCODE_NAMES.get(opcode, opcode)
        error, _ = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert error == 0

    serve(test)


def test_malformed_and_truncated_requests_are_logged_and_answered_eio(caplog):
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        bad = [
            (abi.LOOKUP, b"no-terminator"),
            (abi.SETATTR, bytes(20)),                      # fuse_setattr_in is 88 bytes
            (abi.RENAME, abi.RENAME_IN.pack(1) + b"a\0b"),  # second name unterminated
            (abi.WRITE, abi.WRITE_IN.pack(0, 0, 4096, 0, 0, 0, 0) + b"short"),
            (abi.READ, bytes(8)),
        ]
        for opcode, body in bad:
            error, _ = await kernel.call(opcode, body, nodeid=2)
            assert error == errno.EIO, abi.OPCODE_NAMES[opcode]
        # A header whose length disagrees with what was read.
        unique = await kernel.send(abi.GETATTR, bytes(16), length=999)
        assert (await kernel.receive())[:2] == (unique, errno.EIO)
        # A message too short for a header is dropped (it has no unique to answer).
        await kernel.sock.send(b"tiny")
        error, _ = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert error == 0

    with caplog.at_level(logging.ERROR, logger="layerfs.fuse"):
        serve(test)
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 7, [r.getMessage() for r in caplog.records]


def test_a_bug_in_the_filesystem_is_logged_and_answered_eio(caplog):
    fs = _tree()

    async def broken(*args) -> None:
        raise RuntimeError("a bug")

    fs.statfs = broken  # type: ignore[method-assign]

    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        error, _ = await kernel.call(abi.STATFS)
        assert error == errno.EIO
        error, _ = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert error == 0

    with caplog.at_level(logging.ERROR, logger="layerfs.fuse"):
        serve(test, fs=fs)
    assert any("STATFS" in r.getMessage() and r.exc_info for r in caplog.records)


def test_interrupt_cancels_a_blocked_request_which_answers_eintr():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        ino = fs.nodes[ROOT_INODE].children[b"block"]
        blocked = await kernel.send(abi.READ, read_in(0, 0, 4096), nodeid=ino)
        # Other requests are served meanwhile: the blocked one holds up nothing.
        error, _ = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert error == 0
        await kernel.send(abi.INTERRUPT, abi.INTERRUPT_IN.pack(blocked), nodeid=0)
        unique, error, _ = await kernel.receive()
        assert (unique, error) == (blocked, errno.EINTR)
        # An interrupt of a request already answered is ignored (no reply).
        await kernel.send(abi.INTERRUPT, abi.INTERRUPT_IN.pack(blocked), nodeid=0)
        error, _ = await kernel.call(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert error == 0

    serve(test)


def test_forget_gets_no_reply():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        await kernel.send(abi.FORGET, abi.FORGET_IN.pack(1), nodeid=2)
        await kernel.send(abi.BATCH_FORGET, abi.BATCH_FORGET_IN.pack(2, 0)
                          + abi.FORGET_ONE.pack(2, 1) + abi.FORGET_ONE.pack(3, 1), nodeid=0)
        unique = await kernel.send(abi.GETATTR, abi.GETATTR_IN.pack(0, 0, 0))
        assert (await kernel.receive())[:2] == (unique, 0)  # the first reply is GETATTR's

    serve(test)


def test_readdir_packs_entries_up_to_the_size_asked_and_continues_at_the_offset():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        directory = fs.nodes[ROOT_INODE].children[b"dir"]
        expected = [b".", b"..", *(b"file-with-a-longish-name-%02d" % i for i in range(50))]
        for opcode, plus in ((abi.READDIR, False), (abi.READDIRPLUS, True)):
            seen: list[bytes] = []
            pages: list[int] = []
            offset = 0
            while True:
                error, payload = await kernel.call(opcode, read_in(0, offset, 1024),
                                                   nodeid=directory)
                assert error == 0 and len(payload) <= 1024
                entries = parse_dirents(payload, plus)
                if not entries:
                    break
                pages.append(len(payload))
                seen += [name for name, _, _ in entries]
                offset = entries[-1][2]
            assert seen == expected, abi.OPCODE_NAMES[opcode]
            # Every page but the last is packed as full as the next entry allows.
            assert all(page > 1024 - abi.dirent_size(b"x" * 28, plus) for page in pages[:-1])

    serve(test)


def test_xattr_size_probe_and_erange():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        value = b"v" * 10
        error, _ = await kernel.call(abi.SETXATTR, abi.SETXATTR_IN.pack(len(value), 0)
                                     + names(b"user.k") + value, nodeid=2)
        assert error == 0 and fs.nodes[2].xattrs == {b"user.k": value}
        error, payload = await kernel.call(abi.GETXATTR, abi.GETXATTR_IN.pack(0, 0)
                                           + names(b"user.k"), nodeid=2)
        assert error == 0 and abi.GETXATTR_OUT.unpack(payload)[0] == 10
        error, _ = await kernel.call(abi.GETXATTR, abi.GETXATTR_IN.pack(5, 0) + names(b"user.k"),
                                     nodeid=2)
        assert error == errno.ERANGE
        error, payload = await kernel.call(abi.GETXATTR, abi.GETXATTR_IN.pack(64, 0)
                                           + names(b"user.k"), nodeid=2)
        assert (error, payload) == (0, value)
        error, payload = await kernel.call(abi.LISTXATTR, abi.GETXATTR_IN.pack(64, 0), nodeid=2)
        assert (error, payload) == (0, b"user.k\0")
        error, _ = await kernel.call(abi.GETXATTR, abi.GETXATTR_IN.pack(64, 0)
                                     + names(b"user.none"), nodeid=2)
        assert error == errno.ENODATA

    serve(test)


def test_setattr_decodes_the_fields_asked_for_and_resolves_now():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        valid = abi.FATTR_MODE | abi.FATTR_SIZE | abi.FATTR_MTIME | abi.FATTR_ATIME_NOW
        body = abi.SETATTR_IN.pack(valid, 0, 0, 3, 0, 0, 1_000_000, 0, 0, 5, 0, 0o600, 0, 0, 0, 0)
        error, payload = await kernel.call(abi.SETATTR, body, nodeid=2)
        assert error == 0
        node = fs.nodes[2]
        assert node.data == b"hel" and stat.S_IMODE(node.attributes.mode) == 0o600
        assert node.attributes.mtime_ns == 1_000_000 * 10**9 + 5
        assert node.attributes.atime_ns > 1_600_000_000 * 10**9  # "now", not the zero sent
        assert abi.ATTR_OUT.unpack(payload)[4] == 3  # size in the reply

    serve(test)


def test_create_write_read_rename_and_zero_message_open():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        error, payload = await kernel.call(abi.CREATE, abi.CREATE_IN.pack(0o1, 0o644, 0o22, 0)
                                           + names(b"new"))
        assert error == 0 and len(payload) == abi.ENTRY_OUT.size + abi.OPEN_OUT.size
        ino = unpack_entry(payload)[0]
        fh = abi.OPEN_OUT.unpack_from(payload, abi.ENTRY_OUT.size)[0]
        error, payload = await kernel.call(abi.WRITE, abi.WRITE_IN.pack(fh, 0, 5, 0, 0, 0, 0)
                                           + b"abcde", nodeid=ino)
        assert error == 0 and abi.WRITE_OUT.unpack(payload)[0] == 5
        error, payload = await kernel.call(abi.READ, read_in(fh, 1, 100), nodeid=ino)
        assert (error, payload) == (0, b"bcde")
        error, _ = await kernel.call(abi.RENAME2, abi.RENAME2_IN.pack(ROOT_INODE, 1, 0)
                                     + names(b"new", b"hello"))
        assert error == errno.EEXIST  # RENAME_NOREPLACE
        error, _ = await kernel.call(abi.RENAME, abi.RENAME_IN.pack(ROOT_INODE)
                                     + names(b"new", b"renamed"))
        assert error == 0 and b"renamed" in fs.nodes[ROOT_INODE].children
        fs.zero_open = True
        error, _ = await kernel.call(abi.OPEN, abi.OPEN_IN.pack(0, 0), nodeid=ino)
        assert error == errno.ENOSYS
        error, _ = await kernel.call(abi.OPENDIR, abi.OPEN_IN.pack(0, 0))
        assert error == errno.ENOSYS

    serve(test)


def test_invalidation_notices_are_written_with_unique_zero():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        assert fs.notifier is not None
        fs.notifier.invalidate_entry(ROOT_INODE, b"hello")
        unique, code, payload = await kernel.receive()
        assert (unique, code) == (0, -abi.NOTIFY_INVAL_ENTRY)
        assert abi.NOTIFY_INVAL_ENTRY_OUT.unpack_from(payload) == (ROOT_INODE, 5, 0)
        assert payload[abi.NOTIFY_INVAL_ENTRY_OUT.size:] == b"hello\0"
        fs.notifier.invalidate_inode(2, attr_only=True)
        unique, code, payload = await kernel.receive()
        assert (unique, code) == (0, -abi.NOTIFY_INVAL_INODE)
        assert abi.NOTIFY_INVAL_INODE_OUT.unpack(payload) == (2, -1, 0)

    serve(test)


def test_terminate_ends_the_session():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        session.terminate()
        await trio.sleep(0.05)

    serve(test)


def test_allow_root_turns_other_users_away_but_serves_open_files():
    async def test(kernel: FakeKernel, session: Session, fs: MemFS) -> None:
        kernel.uid = 1000
        error, _ = await kernel.call(abi.LOOKUP, names(b"hello"))
        assert error == errno.EACCES
        error, payload = await kernel.call(abi.READ, read_in(0, 0, 5), nodeid=2)
        assert (error, payload) == (0, b"hello")
        kernel.uid = 0
        error, _ = await kernel.call(abi.LOOKUP, names(b"hello"))
        assert error == 0

    serve(test, allowed_uids=frozenset({0}))
