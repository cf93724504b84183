"""Read-ahead of the layers' metadata into the kernel's caches.

The index reads a directory of each layer when it is first needed; on a cold
cache each such read waits for the disk, one after another. Meanwhile, a few
``du`` processes (one per layer, low CPU priority) walk the layers' trees, so
the disk serves several directories at once and the index's own reads find
them in the kernel's dentry and inode caches: a first walk of a cold mount
then costs about what it costs on the kernel overlay.

The walks (these and the xattr check's, :mod:`layerfs.xattrcheck`) give way to
a big file read through right after mounting (a binary run, a file copied
out): while its reads wait for the disk, the walks are stopped (SIGSTOP), and
they go on once the disk has been the reads' alone for half a second.

This is read-ahead only: it keeps nothing, changes nothing, and runs outside
the daemon's event loop and GIL. The mount stops it once the index is
complete or the mount ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from typing import Callable, Mapping, Sequence

import trio
import trio.lowlevel

log = logging.getLogger(__name__)

AT_ONCE = 4
"""Layers walked at the same time."""
NICENESS = 10
GIVE_WAY_FOR = 0.5
"""Seconds the walks stay stopped after a big file's read last waited for the disk."""
POLL_EVERY = 0.1


class Walks:
    """The read-ahead's subprocesses under way: all stopped, or all going."""

    def __init__(self) -> None:
        self._running: set[trio.Process] = set()
        self._stopped = False

    async def run(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> bytes:
        """Run ``command`` at low priority, among the walks; its output. Cancelling
        it kills the process."""
        process = await trio.lowlevel.open_process(
            list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env)
        try:
            try:
                os.setpriority(os.PRIO_PROCESS, process.pid, NICENESS)
            except OSError:
                pass  # already done
            self._running.add(process)
            if self._stopped:
                process.send_signal(signal.SIGSTOP)
            assert process.stdout is not None
            output = bytearray()
            async with process.stdout:
                async for chunk in process.stdout:
                    output += chunk
            await process.wait()
            return bytes(output)
        finally:
            self._running.discard(process)
            if process.returncode is None:
                process.kill()  # stopped or not
                with trio.CancelScope(shield=True):
                    await process.wait()

    def _stop(self, stopped: bool) -> None:
        if stopped == self._stopped:
            return
        self._stopped = stopped
        for process in self._running:
            if process.returncode is None:
                process.send_signal(signal.SIGSTOP if stopped else signal.SIGCONT)

    async def give_way(self, last_streaming_wait: Callable[[], float]) -> None:
        """Until cancelled: stop the walks while a big file's reads wait for the
        disk (``last_streaming_wait``: the time.monotonic() of the latest wait)."""
        try:
            while True:
                self._stop(time.monotonic() - last_streaming_wait() < GIVE_WAY_FOR)
                await trio.sleep(POLL_EVERY)
        finally:
            self._stop(False)


async def warm_layers(roots: Sequence[str], walks: Walks | None = None) -> None:
    """Walk every layer root (top first: what the merge reads first); returns when
    all are walked. Cancelling it kills the walks under way."""
    du = shutil.which("du")
    if du is None:
        log.info("no du(1): no read-ahead of the layers' metadata")
        return
    walks = walks or Walks()
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def walk(root: str) -> None:
        async with limiter:
            # -x: stay on the layer's filesystem; -s: print one line. Errors (an
            # unreadable dir) are the index's to report, not the read-ahead's.
            await walks.run([du, "-sx", "--", root])

    async with trio.open_nursery() as nursery:
        for root in roots:
            nursery.start_soon(walk, root)
