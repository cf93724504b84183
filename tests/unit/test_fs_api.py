"""LayerOperations called directly, as an engine calls it, without the kernel:
reads by inode with fh 0 (zero-message opens), the bounded cache of backing
descriptors, listings stable at every offset, a file opened and then copied
up (by a write, a truncation, a setattr), an unlinked open file, fallocate,
lseek and copy_file_range, and the notices to the kernel: exactly the inodes
a change touched, also when it fails after a copy-up."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import trio

from layerfs.fs import LayerOperations
from layerfs.fuse.api import ROOT_INODE, AttrChanges, Context, Entry, FUSEError
from layerfs.index import PathIndex
from layerfs.layer import Layer
from layerfs.upper import open_writable
from tests.support.layerspec import File, materialize_stack

CTX = Context(uid=0, gid=0, pid=os.getpid())
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

STACK = [{b"d/a": File(b"alpha"), b"d/b": File(b"bravo"), b"d/c": File(b"charlie"),
          b"d/e": File(b"echo"), b"d/f": File(b"foxtrot"), b"big": File(b"x" * 100_000)},
         {b"d/b": File(b"BRAVO"), b"d/g": File(b"golf")}]


class Notices:
    """A notifier that records what the filesystem tells the kernel."""

    def __init__(self) -> None:
        self.inodes: list[tuple[int, bool]] = []
        self.entries: list[tuple[int, bytes]] = []

    def invalidate_inode(self, ino: int, *, attr_only: bool = False) -> None:
        self.inodes.append((ino, attr_only))

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        self.entries.append((parent, name))


def layers_of(scratch: Path) -> list[Layer]:
    dirs = materialize_stack(STACK, scratch, "native")
    return [Layer(str(d), label=d.name) for d in dirs]


@pytest.fixture
def read_only(scratch):
    ops = LayerOperations(PathIndex(layers_of(scratch)), zero_message_opens=True,
                          cached_files=2)
    ops.open_layers()
    yield ops
    ops.close_layers()


@pytest.fixture
def writable(scratch):
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    index, upper = open_writable(layers_of(scratch), str(scratch / "upper"),
                                 str(scratch / "work"))
    ops = LayerOperations(index, upper=upper, zero_message_opens=True)
    ops.open_layers()
    yield ops, scratch / "upper"
    ops.close_layers()


def run(ops: LayerOperations, test) -> None:
    async def main() -> None:
        await test()
    trio.run(main)


async def ino_of(ops: LayerOperations, path: str) -> int:
    ino = ROOT_INODE
    for name in path.split("/"):
        ino = (await ops.lookup(ino, name.encode(), CTX)).attributes.ino
    return ino


async def listing(ops: LayerOperations, ino: int, offset: int, *, fh: int = 0,
                  room: int | None = None) -> list[tuple[bytes, int, int]]:
    """(name, inode, next offset) of the entries one READDIR from ``offset`` gives;
    ``room``: how many fit in the reply."""
    got: list[tuple[bytes, int, int]] = []

    def add(name: bytes, entry: Entry, next_offset: int) -> bool:
        if room is not None and len(got) >= room:
            return False
        got.append((name, entry.attributes.ino, next_offset))
        return True

    await ops.readdir(ino, fh, offset, True, add)
    return got


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_read_only_mount_answers_open_enosys_and_reads_by_inode(read_only):
    ops = read_only

    async def test() -> None:
        b = await ino_of(ops, "d/b")
        for request in (ops.open(b, os.O_RDONLY, CTX), ops.opendir(ROOT_INODE, CTX)):
            with pytest.raises(FUSEError) as refused:
                await request
            assert refused.value.errno == errno.ENOSYS
        assert bytes(await ops.read(b, 0, 0, 100)) == b"BRAVO"
        assert bytes(await ops.read(b, 0, 2, 2)) == b"AV"
        d = await ino_of(ops, "d")
        names = [name for name, _, _ in await listing(ops, d, 0)]
        assert names == [b".", b"..", b"a", b"b", b"c", b"e", b"f", b"g"]

    run(ops, test)


def test_the_descriptor_cache_is_bounded_and_closed_on_forget(read_only):
    ops = read_only  # keeps 2 descriptors

    async def test() -> None:
        before = open_fds()
        inodes = [await ino_of(ops, f"d/{name}") for name in "abcef"]
        for ino in inodes:
            assert await ops.read(ino, 0, 0, 10)
        assert open_fds() == before + 2
        # The last two read are the ones kept: reading them opens nothing.
        for ino in inodes[-2:]:
            assert await ops.read(ino, 0, 0, 10)
        assert open_fds() == before + 2
        await ops.forget([(inodes[-1], 1)])
        assert open_fds() == before + 1
        await ops.forget([(ino, 1) for ino in inodes])
        assert open_fds() == before
        assert bytes(await ops.read(inodes[0], 0, 0, 10)) == b"alpha"  # opened again

    run(ops, test)


def test_listings_are_the_same_from_every_offset(read_only):
    ops = read_only

    async def test() -> None:
        d = await ino_of(ops, "d")
        full = await listing(ops, d, 0)
        assert full == await listing(ops, d, 0)
        # From any offset the kernel was given: the rest of the same listing.
        for position, (_, _, next_offset) in enumerate(full):
            assert await listing(ops, d, next_offset) == full[position + 1:]
        # Replies of any size, continued from their last offset, add up to it.
        for room in (1, 2, 3):
            pieces: list[tuple[bytes, int, int]] = []
            offset = 0
            while piece := await listing(ops, d, offset, room=room):
                pieces += piece
                offset = piece[-1][2]
            assert pieces == full
        # The index reading everything else leaves it as it was.
        ops.index.load_all()
        assert await listing(ops, d, 0) == full

    run(ops, test)


def test_a_file_opened_then_copied_up_reads_the_new_data(writable):
    ops, _ = writable

    async def test() -> None:
        a = await ino_of(ops, "d/a")
        reader = await ops.open(a, os.O_RDONLY, CTX)
        assert reader.keep_cache and reader.noflush
        assert bytes(await ops.read(a, reader.fh, 0, 100)) == b"alpha"
        assert bytes(await ops.read(a, 0, 0, 100)) == b"alpha"  # a cached descriptor
        writer = await ops.open(a, os.O_WRONLY, CTX)  # copies it up
        assert not writer.noflush
        assert await ops.write(a, writer.fh, 0, b"ALPHA") == 5
        assert bytes(await ops.read(a, reader.fh, 0, 100)) == b"ALPHA"
        assert bytes(await ops.read(a, 0, 0, 100)) == b"ALPHA"
        for opened in (reader, writer):
            await ops.release(a, opened.fh)

    run(ops, test)


def test_a_writable_mount_keeps_open_and_lets_the_kernel_cache(writable):
    ops, _ = writable  # zero-message opens are for read-only mounts only

    async def test() -> None:
        opened = await ops.opendir(ROOT_INODE, CTX)
        assert opened.fh and opened.keep_cache and opened.cache_dir
        assert [name for name, _, _ in await listing(ops, ROOT_INODE, 0, fh=opened.fh)] \
            == [b".", b"..", b"big", b"d"]
        await ops.releasedir(ROOT_INODE, opened.fh)

    run(ops, test)


def test_side_effects_of_a_change_are_invalidated(writable):
    ops, _ = writable
    notices = Notices()
    ops.init(notices)

    async def test() -> None:
        d = await ino_of(ops, "d")
        a = await ino_of(ops, "d/a")
        await ops.unlink(d, b"a", CTX)  # copies d up: its nlink shows differently
        assert (d, False) in notices.inodes
        assert all(ino != a for ino, _ in notices.inodes)

    run(ops, test)


def test_fallocate_copies_up_and_passes_the_mode(writable):
    ops, upper = writable

    async def test() -> None:
        c = await ino_of(ops, "d/c")
        await ops.fallocate(c, 0, 0, 65536, 0)  # fh 0: copies up, opens the upper file
        on_disk = os.stat(upper / "d" / "c")
        assert on_disk.st_size == 65536
        assert (await ops.getattr(c, CTX)).attributes.size == 65536
        assert bytes(await ops.read(c, 0, 0, 7)) == b"charlie"
        opened = await ops.open(c, os.O_RDWR, CTX)
        await ops.fallocate(c, opened.fh, 65536, 65536, FALLOC_FL_KEEP_SIZE)
        assert os.stat(upper / "d" / "c").st_size == 65536
        await ops.release(c, opened.fh)
        reader = await ops.open(c, os.O_RDONLY, CTX)
        with pytest.raises(FUSEError) as not_writable:
            await ops.fallocate(c, reader.fh, 0, 10, 0)
        assert not_writable.value.errno == errno.EBADF
        await ops.release(c, reader.fh)

    run(ops, test)


def test_fallocate_on_a_read_only_mount_is_erofs(read_only):
    ops = read_only

    async def test() -> None:
        with pytest.raises(FUSEError) as refused:
            await ops.fallocate(await ino_of(ops, "d/a"), 0, 0, 10, 0)
        assert refused.value.errno == errno.EROFS

    run(ops, test)


def test_lseek_finds_data_and_holes_as_the_backing_file_does(writable):
    ops, upper = writable

    async def test() -> None:
        e = await ino_of(ops, "d/e")
        opened = await ops.open(e, os.O_RDWR, CTX)
        # A hole, then data at 1 MiB, in the upper file.
        await ops.write(e, opened.fh, 1 << 20, b"data")
        await ops.fallocate(e, opened.fh, 0, 1 << 20, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
        backing = os.open(upper / "d" / "e", os.O_RDONLY)
        try:
            for offset in (0, 4096, 1 << 20):
                for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                    assert await ops.lseek(e, opened.fh, offset, whence) == \
                        os.lseek(backing, offset, whence)
                    assert await ops.lseek(e, 0, offset, whence) == \
                        os.lseek(backing, offset, whence)
            with pytest.raises(FUSEError) as beyond:
                await ops.lseek(e, opened.fh, (1 << 20) + 100, os.SEEK_DATA)
            assert beyond.value.errno == errno.ENXIO
        finally:
            os.close(backing)
        await ops.release(e, opened.fh)

    run(ops, test)


def test_copy_file_range_from_a_lower_file_into_a_new_one(writable):
    ops, upper = writable

    async def test() -> None:
        big = await ino_of(ops, "big")
        opened, entry = await ops.create(ROOT_INODE, b"copy", stat.S_IFREG | 0o644,
                                         os.O_WRONLY, CTX)
        copy = entry.attributes.ino
        copied = 0
        while copied < 100_000:
            step = await ops.copy_file_range(big, 0, copied, copy, opened.fh, copied,
                                             100_000 - copied, 0)
            assert step > 0
            copied += step
        assert (upper / "copy").read_bytes() == b"x" * 100_000
        assert (await ops.getattr(copy, CTX)).attributes.size == 100_000
        assert not (upper / "big").exists()  # the source stays below
        with pytest.raises(FUSEError) as not_writable:
            await ops.copy_file_range(copy, opened.fh, 0, big, 0, 0, 10, 0)
        assert not_writable.value.errno == errno.EBADF
        await ops.release(copy, opened.fh)

    run(ops, test)


def test_setattr_through_a_directory_handle(writable):
    ops, upper = writable

    async def test() -> None:
        d = await ino_of(ops, "d")
        opened = await ops.opendir(d, CTX)
        entry = await ops.setattr(d, AttrChanges(mode=stat.S_IFDIR | 0o700), opened.fh, CTX)
        assert stat.S_IMODE(entry.attributes.mode) == 0o700
        assert stat.S_IMODE(os.stat(upper / "d").st_mode) == 0o700
        await ops.releasedir(d, opened.fh)

    run(ops, test)


def test_readers_follow_a_copy_up_by_truncation_and_by_setattr(writable):
    ops, upper = writable

    async def test() -> None:
        a, b = await ino_of(ops, "d/a"), await ino_of(ops, "d/b")
        reader = await ops.open(a, os.O_RDONLY, CTX)
        assert bytes(await ops.read(a, 0, 0, 100)) == b"alpha"  # cached by inode too
        # Another handle copies it up without its data (O_TRUNC) and writes.
        writer = await ops.open(a, os.O_WRONLY | os.O_TRUNC, CTX)
        assert bytes(await ops.read(a, reader.fh, 0, 100)) == b""
        await ops.write(a, writer.fh, 0, b"new")
        assert bytes(await ops.read(a, reader.fh, 0, 100)) == b"new"
        assert bytes(await ops.read(a, 0, 0, 100)) == b"new"
        for opened in (reader, writer):
            await ops.release(a, opened.fh)
        # A truncate by path (no handle) copies up too: the reader sees it.
        reader = await ops.open(b, os.O_RDONLY, CTX)
        assert bytes(await ops.read(b, reader.fh, 0, 100)) == b"BRAVO"
        entry = await ops.setattr(b, AttrChanges(size=2), None, CTX)
        assert entry.attributes.size == 2
        assert (upper / "d" / "b").read_bytes() == b"BR"
        assert bytes(await ops.read(b, reader.fh, 0, 100)) == b"BR"
        await ops.release(b, reader.fh)

    run(ops, test)


def test_an_unlinked_open_file_stays_readable_and_writable(writable):
    ops, upper = writable

    async def test() -> None:
        d, e = await ino_of(ops, "d"), await ino_of(ops, "d/e")
        writer = await ops.open(e, os.O_RDWR, CTX)  # copies it up
        reader = await ops.open(e, os.O_RDONLY, CTX)
        await ops.unlink(d, b"e", CTX)
        assert stat.S_ISCHR(os.lstat(upper / "d" / "e").st_mode)  # a whiteout hides the lower e
        with pytest.raises(FUSEError) as gone:
            await ops.lookup(d, b"e", CTX)
        assert gone.value.errno == errno.ENOENT
        assert await ops.write(e, writer.fh, 4, b"-and-more") == 9
        assert bytes(await ops.read(e, writer.fh, 0, 100)) == b"echo-and-more"
        assert bytes(await ops.read(e, reader.fh, 0, 100)) == b"echo-and-more"
        assert (await ops.getattr(e, CTX)).attributes.size == 13
        # A setattr without a handle (fchmod, ftruncate by the kernel's choice)
        # goes through the descriptor a handle holds: the file has no name.
        entry = await ops.setattr(e, AttrChanges(size=4, mode=stat.S_IFREG | 0o600), None, CTX)
        assert entry.attributes.size == 4
        assert stat.S_IMODE(entry.attributes.mode) == 0o600
        assert bytes(await ops.read(e, reader.fh, 0, 100)) == b"echo"
        await ops.release(e, reader.fh)
        await ops.release(e, writer.fh)
        with pytest.raises(FUSEError) as unreachable:
            await ops.setattr(e, AttrChanges(size=0), None, CTX)
        assert unreachable.value.errno == errno.ENOENT

    run(ops, test)


def test_setattr_on_a_lower_file_copies_up_and_returns_the_touched_inodes(writable):
    ops, upper = writable
    notices = Notices()
    ops.init(notices)
    assert ops.upper is not None

    async def test() -> None:
        d, f = await ino_of(ops, "d"), await ino_of(ops, "d/f")
        change = ops.upper.setattr(ops.index.get(f), mode=0o600)
        # The file is the request's own: the parent copied up on the way is touched.
        assert change.touched == {d}
        assert change.value is None
        assert stat.S_IMODE(os.stat(upper / "d" / "f").st_mode) == 0o600
        assert (upper / "d" / "f").read_bytes() == b"foxtrot"
        # Through the operations: exactly the touched inodes are invalidated.
        g = await ino_of(ops, "d/g")  # a lower file in d, which is upper now
        big = await ino_of(ops, "big")
        notices.inodes.clear()
        entry = await ops.setattr(big, AttrChanges(mode=stat.S_IFREG | 0o640), None, CTX)
        assert stat.S_IMODE(entry.attributes.mode) == 0o640
        assert notices.inodes == []  # the root is upper already: nothing on the side
        entry = await ops.setattr(g, AttrChanges(mtime_ns=10**18), None, CTX)
        assert entry.attributes.mtime_ns == 10**18
        assert notices.inodes == []
        assert ops.upper.copy_up(ops.index.get(d)).touched == frozenset()  # nothing to do

    run(ops, test)


def test_a_change_that_fails_after_a_copy_up_still_invalidates_it(writable):
    ops, upper = writable
    notices = Notices()
    ops.init(notices)

    async def test() -> None:
        d, a = await ino_of(ops, "d"), await ino_of(ops, "d/a")
        with pytest.raises(FUSEError) as refused:
            # Larger than any filesystem takes (XATTR_SIZE_MAX is 64 KiB).
            await ops.setxattr(a, b"user.big", b"x" * (1 << 17), 0, CTX)
        assert refused.value.errno in (errno.E2BIG, errno.ENOSPC)
        assert (upper / "d" / "a").is_file()  # the copy-up stays done
        assert (d, False) in notices.inodes

    run(ops, test)
