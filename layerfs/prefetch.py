"""Read-ahead of the layers' metadata into the kernel's caches.

The index reads a directory of each layer when it is first needed; on a cold
cache each such read waits for the disk, one after another. Meanwhile, a few
``du`` processes (one per layer, low CPU priority) walk the layers' trees, so
the disk serves several directories at once and the index's own reads find
them in the kernel's dentry and inode caches: a first walk of a cold mount
then costs about what it costs on the kernel overlay.

This is read-ahead only: it keeps nothing, changes nothing, and runs outside
the daemon's event loop and GIL. The mount stops it once the index is
complete or the mount ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Sequence

import trio
import trio.lowlevel

log = logging.getLogger(__name__)

AT_ONCE = 4
"""Layers walked at the same time."""
NICENESS = 10


async def _walk(du: str, root: str, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        # -x: stay on the layer's filesystem; -s: print one line. Errors (an
        # unreadable dir) are the index's to report, not the read-ahead's.
        process = await trio.lowlevel.open_process(
            [du, "-sx", "--", root], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            try:
                os.setpriority(os.PRIO_PROCESS, process.pid, NICENESS)
            except OSError:
                pass  # already done
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()


async def warm_layers(roots: Sequence[str]) -> None:
    """Walk every layer root (top first: what the merge reads first); returns when
    all are walked. Cancelling it kills the walks under way."""
    du = shutil.which("du")
    if du is None:
        log.info("no du(1): no read-ahead of the layers' metadata")
        return
    limiter = trio.CapacityLimiter(AT_ONCE)
    async with trio.open_nursery() as nursery:
        for root in roots:
            nursery.start_soon(_walk, du, root, limiter)
