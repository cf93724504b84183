"""A mount's index that is not known yet: its layers are still arriving.

A lazy registry mount goes live before some of its layers exist (plain gzip
layers, pulled whole in the background). The merged tree cannot be known
until every layer is present, since any later layer may add or white out
anything, so the index is built once they all are.

:class:`DeferredIndex` owns that wait. The daemon runs :meth:`DeferredIndex.run`
as a background task (after daemonizing: threads do not survive a fork); FUSE
requests that need the tree ``await`` :meth:`DeferredIndex.ready`. When the
layers cannot be had (registry gone, digest mismatch) the failure is logged
once and every request that needs the tree gets EIO; the mount stays up so
that it can be unmounted cleanly.
"""

from __future__ import annotations

import errno
import logging
from typing import Callable, Protocol, Sequence

import trio

from .index import PathIndex
from .layer import Layer

log = logging.getLogger(__name__)


class PendingLayers(Protocol):
    """Layers not all present yet, and how to get them (see e.g.
    :class:`layerfs.registry.lazy.background.BackgroundPull`)."""

    directory: str
    """An existing directory on the filesystem the layers will be on (for statfs)."""

    description: str
    """What is being fetched, for the log."""

    def wait(self, *, quiet: bool = True) -> list[Layer]:
        """Block until every layer is present; the complete stack, bottom first.
        Raises if a layer cannot be had. ``quiet=False``: show progress on a terminal."""

    def cancel(self) -> None:
        """Stop fetching soon (the mount is going away); may be called from any thread."""


class DeferredIndex:
    """The :class:`PathIndex` of layers that are still arriving."""

    def __init__(self, pending: PendingLayers,
                 build: Callable[[Sequence[Layer]], PathIndex] = PathIndex) -> None:
        self.pending = pending
        self._build = build
        self._done = trio.Event()
        self.index: PathIndex | None = None
        self.failure: str | None = None

    @property
    def statfs_path(self) -> str:
        return self.pending.directory

    async def run(self) -> None:
        """Fetch the layers, then build the index (both in worker threads)."""
        log.info("fetching %s in the background", self.pending.description)
        try:
            # Abandoned on cancellation (unmount): cancel() makes the fetch stop by itself.
            layers = await trio.to_thread.run_sync(self.pending.wait, abandon_on_cancel=True)
            index = await trio.to_thread.run_sync(self._build, layers, abandon_on_cancel=True)
        except trio.Cancelled:
            self.pending.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is an EIO for the readers
            self.failure = str(exc) or type(exc).__name__
            log.error("the mount cannot show its files: %s", self.failure)
        else:
            self.index = index
            log.info("all layers present: serving %d entries from %d layers", len(index),
                     len(index.layers))
        finally:
            self._done.set()

    async def ready(self) -> PathIndex:
        """The index, once built; OSError(EIO) if it never will be."""
        await self._done.wait()
        if self.index is None:
            raise OSError(errno.EIO, f"layers not available: {self.failure}")
        return self.index
