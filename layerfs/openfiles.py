"""The open files of a mount: backing descriptors by handle, and by inode.

A file the kernel opened with OPEN has a handle (fh) here until RELEASE. A
file read with fh 0 (a "zero-message open": the kernel never sent OPEN) has
no handle; its backing descriptor is kept in a small LRU cache by inode
instead, closed when the kernel forgets the inode or when the cache is full
and the descriptor has gone unused the longest. Knows nothing of FUSE.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from .index import Node

# Backing descriptors kept for reads by inode: enough for a busy walk, far
# below the usual 1024 descriptors' soft limit.
DEFAULT_CACHED = 256


@dataclass(slots=True)
class OpenFile:
    """A node, a descriptor of its backing file, and the layer that descriptor
    reads (a reader follows its file when it is copied up)."""

    node: Node
    fd: int
    layer: int
    writable: bool


class OpenFiles:
    """Handles by number, plus the bounded cache of descriptors by inode."""

    def __init__(self, cached: int = DEFAULT_CACHED) -> None:
        self._handles: dict[int, OpenFile] = {}
        self._numbers = itertools.count(1)
        self._by_inode: OrderedDict[int, OpenFile] = OrderedDict()
        self._limit = cached

    def number(self) -> int:
        """A fresh handle number (files and directories share them; never 0)."""
        return next(self._numbers)

    # -- handles (OPEN .. RELEASE) ----------------------------------------------

    def add(self, opened: OpenFile) -> int:
        fh = self.number()
        self._handles[fh] = opened
        return fh

    def get(self, fh: int) -> OpenFile | None:
        """The open file of handle ``fh`` (None for a directory's or an unknown one)."""
        return self._handles.get(fh)

    def release(self, fh: int) -> None:
        opened = self._handles.pop(fh, None)
        if opened is not None:
            os.close(opened.fd)

    def handles(self) -> Iterator[OpenFile]:
        return iter(self._handles.values())

    # -- descriptors by inode (fh 0) ----------------------------------------------

    def cached(self, ino: int) -> OpenFile | None:
        opened = self._by_inode.get(ino)
        if opened is not None:
            self._by_inode.move_to_end(ino)
        return opened

    def cache(self, opened: OpenFile) -> None:
        """Keep ``opened`` for reads of its inode, closing the least recently used
        descriptor if the cache is full."""
        ino = opened.node.ino
        self.forget(ino)
        self._by_inode[ino] = opened
        while len(self._by_inode) > self._limit:
            _, oldest = self._by_inode.popitem(last=False)
            os.close(oldest.fd)

    def forget(self, ino: int) -> None:
        """The kernel dropped the inode: close its cached descriptor."""
        opened = self._by_inode.pop(ino, None)
        if opened is not None:
            os.close(opened.fd)

    def __len__(self) -> int:
        """How many descriptors are open (handles and cached)."""
        return len(self._handles) + len(self._by_inode)

    def close(self) -> None:
        for opened in [*self._handles.values(), *self._by_inode.values()]:
            os.close(opened.fd)
        self._handles.clear()
        self._by_inode.clear()
