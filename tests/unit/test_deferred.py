"""The FUSE operations over a DeferredIndex, handlers called directly (no kernel): statfs
and the root's attributes answer while the layers are arriving, everything else waits
for the index and then answers from it; a failed fetch is EIO, and unmounting cancels
the fetch."""

from __future__ import annotations

import errno
import stat
import threading
from pathlib import Path

import pytest
import trio

from layerfs.deferred import DeferredIndex
from layerfs.fs import LayerOperations
from layerfs.fuse.api import ROOT_INODE, Context, FUSEError
from layerfs.layer import Layer
from tests.support.layerspec import Dir, File, Whiteout, materialize_stack

CTX = Context(uid=0, gid=0, pid=0)


class Arriving:
    """Real layer dirs, handed over when the test lets ``wait`` return."""

    description = "two test layers"

    def __init__(self, layers: list[Layer], directory: Path, failure: str | None = None):
        self.layers = layers
        self.directory = str(directory)
        self.failure = failure
        self.arrive = threading.Event()
        self.cancelled = threading.Event()

    def wait(self) -> list[Layer]:
        assert self.arrive.wait(30)
        if self.cancelled.is_set():
            raise RuntimeError("cancelled")
        if self.failure:
            raise RuntimeError(self.failure)
        return self.layers

    def cancel(self) -> None:
        self.cancelled.set()
        self.arrive.set()


def stack(scratch: Path) -> list[Layer]:
    dirs = materialize_stack([{b"etc": Dir(), b"etc/hosts": File(b"old\n"), b"gone": File()},
                              {b"etc/hosts": File(b"new\n"), b"gone": Whiteout()}],
                             scratch, "oci")
    return [Layer(str(d), label=d.name) for d in dirs]


def test_requests_wait_for_the_index_except_statfs_and_the_root(scratch):
    pending = Arriving(stack(scratch), scratch)
    deferred = DeferredIndex(pending)
    ops = LayerOperations(deferred)
    ops.open_layers()  # nothing to open yet
    log: list[str] = []

    async def lookup_hosts() -> None:
        etc = await ops.lookup(ROOT_INODE, b"etc", CTX)
        log.append("etc looked up")
        hosts = await ops.lookup(etc.attributes.ino, b"hosts", CTX)
        handle = await ops.open(hosts.attributes.ino, 0, CTX)
        log.append(bytes(await ops.read(hosts.attributes.ino, handle.fh, 0, 100)).decode())
        await ops.release(hosts.attributes.ino, handle.fh)
        with pytest.raises(FUSEError) as missing:
            await ops.lookup(ROOT_INODE, b"gone", CTX)
        assert missing.value.errno == errno.ENOENT

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deferred.run)
            nursery.start_soon(lookup_hosts)
            await trio.sleep(0.2)
            assert log == []  # waiting for the layers
            root = await ops.getattr(ROOT_INODE, CTX)
            assert stat.S_ISDIR(root.attributes.mode) and root.attr_timeout == 0
            assert (await ops.statfs(ROOT_INODE, CTX)).bsize > 0
            pending.arrive.set()
        assert log == ["etc looked up", "new\n"]
        root = await ops.getattr(ROOT_INODE, CTX)
        assert root.attr_timeout > 0  # the real root now

    try:
        trio.run(main)
    finally:
        ops.close_layers()


def test_a_failed_fetch_is_eio_and_the_root_still_answers(scratch):
    pending = Arriving(stack(scratch), scratch, failure="registry gone")
    deferred = DeferredIndex(pending)
    ops = LayerOperations(deferred)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deferred.run)
            pending.arrive.set()
        for request in (ops.lookup(ROOT_INODE, b"etc", CTX), ops.opendir(1, CTX)):
            with pytest.raises(FUSEError) as failed:
                await request
            assert failed.value.errno == errno.EIO
        assert stat.S_ISDIR((await ops.getattr(ROOT_INODE, CTX)).attributes.mode)
        assert (await ops.statfs(ROOT_INODE, CTX)).bsize > 0

    trio.run(main)
    assert "registry gone" in (deferred.failure or "")


def test_unmounting_cancels_the_fetch(scratch):
    pending = Arriving(stack(scratch), scratch)
    deferred = DeferredIndex(pending)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deferred.run)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()  # what serve does once the mount is gone

    trio.run(main)
    assert pending.cancelled.is_set()
