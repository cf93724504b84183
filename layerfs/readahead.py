"""Reading ahead across the files of a directory.

A walk that reads files -- tar, cp -r, rsync, a build -- reads a directory's
files one after another in listing order, and on a cold cache each read waits
for the disk in turn. When the first read of a lower file has to wait for the
disk, the files listed after it in its directory are warmed in the
background: a worker thread opens each and asks the disk for its start at
once (``posix_fadvise(WILLNEED)``), so the disk serves several at a time and
the reads, when they come, find the page cache warm (served inline, without
a worker thread of their own). As the walk goes on, the window moves ahead.

Hints only: nothing here changes what a read returns, and a file changed or
copied up meanwhile is just warmed for nothing.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .backing import open_for_reading
from .index import Node, PathIndex

log = logging.getLogger(__name__)

WINDOW_FILES = 32
"""Files warmed ahead of the one being read."""
WINDOW_BYTES = 8 << 20
"""Bytes asked of the disk ahead of the one being read, at most."""
FILE_BYTES = 1 << 20
"""The most of one file warmed (the kernel's own read-ahead takes the rest)."""
SEQUENTIAL_GAP = 4
"""A read this many files or fewer after the last one read is sequential
(a walk skips the directories and symlinks between files)."""
DIRECTORIES = 16
"""Directories being read through at once that are followed."""


@dataclass(slots=True)
class _Streak:
    """A directory whose files are being read through on a cold cache."""

    names: list[bytes]
    positions: dict[bytes, int]
    last: int | None = None
    """Listing position of the file read last."""
    warmed_to: int = 0
    """Listing position up to which files are warmed (or being warmed)."""


class ListingReadahead:
    """Warms the files a walk is about to read (see the module's docstring)."""

    def __init__(self, index: PathIndex, layer_roots: list[int]) -> None:
        self._index = index
        self._layer_roots = layer_roots
        self._streaks: OrderedDict[int, _Streak] = OrderedDict()
        self._worker: ThreadPoolExecutor | None = None
        self._walking = False
        """Whether the files read lately were read in listing order."""

    def first_read(self, node: Node, *, missed: bool) -> list[bytes]:
        """``node`` (a lower file) is being read from its start; ``missed``:
        that read had to wait for the disk. Returns the paths (in their layers)
        it starts warming. Call on the event loop."""
        parent = node.parent
        if parent is None:
            return []
        streak = self._streaks.get(parent.ino)
        fresh = streak is None
        if streak is None:
            if not missed:
                return []  # warm already: nothing to follow
            names = parent.listing()
            streak = _Streak(names, {name: position for position, name in enumerate(names)})
            self._streaks[parent.ino] = streak
            while len(self._streaks) > DIRECTORIES:
                self._streaks.popitem(last=False)
        else:
            self._streaks.move_to_end(parent.ino)
        position = streak.positions.get(node.name)
        if position is None:
            return []  # renamed since
        last, streak.last = streak.last, position
        # A walk reads on in listing order (a program reads its own picks), and
        # one that goes on into another directory is followed there at once.
        if last is not None and 0 < position - last <= SEQUENTIAL_GAP or fresh and self._walking:
            self._walking = True
        else:
            if missed:
                self._walking = False
            return []
        if streak.warmed_to - position > WINDOW_FILES // 2:
            return []  # still well ahead
        batch = self._next_files(parent, streak, position)
        if batch:
            self._submit(batch)
            log.debug("read-ahead: %d files after %s", len(batch), os.fsdecode(node.path()))
        return [path for _, path, _ in batch]

    def _next_files(self, parent: Node, streak: _Streak, position: int
                    ) -> list[tuple[int, bytes, int]]:
        """The lower files after ``position`` to warm, as (layer, path, bytes)."""
        children = parent.children or {}
        names, upper = streak.names, self._index.upper
        batch: list[tuple[int, bytes, int]] = []
        budget = WINDOW_BYTES
        at = max(position + 1, streak.warmed_to)
        stop = min(len(names), position + 1 + WINDOW_FILES)
        while at < stop and budget > 0:
            child = children.get(names[at])
            at += 1
            if child is None or not stat.S_ISREG(child.mode) or child.layer == upper \
                    or child.size == 0:
                continue
            size = min(child.size, FILE_BYTES)
            layer, path = self._index.data_backing(child)
            batch.append((self._layer_roots[layer], path, size))
            budget -= size
        streak.warmed_to = max(streak.warmed_to, at)
        return batch

    def _submit(self, batch: list[tuple[int, bytes, int]]) -> None:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="layerfs-readahead")
        self._worker.submit(_warm, batch)

    def close(self) -> None:
        """Stop warming (before the layer roots are closed)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        self._streaks.clear()


def _warm(batch: list[tuple[int, bytes, int]]) -> None:
    """Ask the disk for the start of each file (runs in the worker thread)."""
    for root, path, size in batch:
        try:
            fd = open_for_reading(root, path)
        except OSError as exc:
            log.debug("read-ahead of %s: %s", os.fsdecode(path), exc.strerror)
            continue
        try:
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
