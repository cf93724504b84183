"""The open files of a mount: backing descriptors by handle, and by inode.

A file the kernel opened with OPEN has a handle (fh) here until RELEASE. A
file read with fh 0 (a "zero-message open": the kernel never sent OPEN) has
no handle; its backing descriptor is kept in a small LRU cache by inode
instead, closed when the kernel forgets the inode or when the cache is full
and the descriptor has gone unused the longest.

The table holds each layer's root open and opens backing files beneath it
(never following a symlink). It keeps every descriptor it hands out on the
file its node shows: a file opened for reading and copied up since (by a
write through another handle) is reopened on the upper layer, as the kernel
overlay does; and it finds the descriptor through which a file whose last
name is gone can still be changed. Knows nothing of FUSE.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from .backing import backing_io, open_for_reading
from .index import Node, PathIndex

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
        self._index: PathIndex | None = None
        self.layer_roots: list[int] = []
        """A descriptor of each layer's root, bottom first (once :meth:`open_layers` ran)."""
        self.fetching = False
        """Whether some layer fetches file data on first open (a lazy registry layer)."""

    # -- the layers -----------------------------------------------------------------

    def open_layers(self, index: PathIndex) -> None:
        """Hold each layer of ``index`` open: backing files are opened beneath it."""
        self._index = index
        self.fetching = any(layer.fetches_content for layer in index.layers)
        for layer in index.layers:
            self.layer_roots.append(
                os.open(layer.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    def open_backing(self, node: Node) -> OpenFile:
        """``node``'s backing file (where its data is), opened for reading."""
        assert self._index is not None, "open_layers first"
        position, relpath = self._index.data_backing(node)
        if relpath.startswith(b"/"):  # an inode index entry (layerfs.hardlinkindex)
            fd = os.open(relpath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            return OpenFile(node, fd, node.layer, False)
        layer = self._index.layers[position]
        layer.ensure_content(relpath)
        with backing_io(layer, relpath):
            fd = open_for_reading(self.layer_roots[position], relpath)
        return OpenFile(node, fd, node.layer, False)

    def _current(self, opened: OpenFile) -> OpenFile:
        """``opened``, reopened on the upper layer if its node was copied up
        since (while it still has a name to open it by)."""
        index = self._index
        if opened.layer != opened.node.layer and index is not None \
                and index.is_attached(opened.node):
            fresh = self.open_backing(opened.node)
            os.close(opened.fd)
            opened.fd, opened.layer = fresh.fd, fresh.layer
        return opened

    def upper_fd(self, node: Node) -> int | None:
        """A descriptor some handle holds of ``node``'s upper file (its only way
        in once its last name is gone)."""
        upper = self._index.upper if self._index is not None else None
        return next((handle.fd for handle in self._handles.values()
                     if handle.node.ino == node.ino and handle.layer == upper), None)

    def number(self) -> int:
        """A fresh handle number (files and directories share them; never 0)."""
        return next(self._numbers)

    # -- handles (OPEN .. RELEASE) ----------------------------------------------

    def add(self, opened: OpenFile) -> int:
        fh = self.number()
        self._handles[fh] = opened
        return fh

    def get(self, fh: int) -> OpenFile | None:
        """The open file of handle ``fh`` (None for a directory's or an unknown one),
        on the file its node shows now."""
        opened = self._handles.get(fh)
        return self._current(opened) if opened is not None else None

    def release(self, fh: int) -> None:
        opened = self._handles.pop(fh, None)
        if opened is not None:
            os.close(opened.fd)

    def handles(self) -> Iterator[OpenFile]:
        return iter(self._handles.values())

    # -- descriptors by inode (fh 0) ----------------------------------------------

    def cached(self, ino: int) -> OpenFile | None:
        """The kept descriptor of inode ``ino``, on the file its node shows now."""
        opened = self._by_inode.get(ino)
        if opened is None:
            return None
        self._by_inode.move_to_end(ino)
        return self._current(opened)

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
        """Close every descriptor: handles, cached ones and the layer roots."""
        for opened in [*self._handles.values(), *self._by_inode.values()]:
            os.close(opened.fd)
        self._handles.clear()
        self._by_inode.clear()
        for fd in self.layer_roots:
            os.close(fd)
        self.layer_roots.clear()
