"""Reading a walk's next directories ahead, into the kernel's caches.

A walk (find, ls -R, du, tar) lists a directory, then enters its
subdirectories one after another, depth first. While the index is still
being read, a directory the walk reaches first is read when it asks, from
the disk on a cold cache, one directory at a time. So when the walk lists a
directory, its unread subdirectories are read ahead: worker threads list
each one's copies in the layers and lstat their entries -- what the index's
own read of it will do -- in the order the walk enters them (the last listed
directory's first subdirectory first), so the disk serves several at once
and the index's read then finds it all in the kernel's dentry and inode
caches.

Keeps nothing and changes nothing: the index still reads for itself. The du
walks of :mod:`layerfs.prefetch` warm whole layers the same way, in their
own order; this follows the walk.
"""

from __future__ import annotations

import logging
import os
import threading

from .backing import open_beneath
from .index import Node, PathIndex

log = logging.getLogger(__name__)

THREADS = 2
"""Directories read ahead at once."""
PENDING = 1024
"""Directories waiting at most (the oldest are dropped: the walk is past them)."""

_Copies = list[tuple[int, bytes]]
"""A directory's copies to read: (layer root descriptor, path in the layer)."""


class DirectoryReadahead:
    """Worker threads reading ahead the subdirectories of listed directories."""

    def __init__(self, index: PathIndex, layer_roots: list[int]) -> None:
        self._index = index
        self._layer_roots = layer_roots
        self._pending: list[tuple[Node | None, _Copies]] = []
        """A stack: the next directory the walk enters is on top (a node, or
        None for a directory met by the read-ahead itself)."""
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self.copies_read = 0
        """Directory copies read so far (for the debug log and tests)."""

    def listed(self, directory: Node) -> int:
        """The walk listed ``directory``: read its unread subdirectories ahead.
        Returns how many were queued. Call on the event loop."""
        children = directory.children or {}
        queued = []
        for name in reversed(directory.listing()):
            child = children.get(name)
            if child is None or child.loader is None:
                continue  # gone, not a directory, or read already
            tree = self._index.tree
            queued.append((child, [(self._layer_roots[position],
                                    tree.known_relpath_in(child, position))
                                   for position in child.listed_layers]))
        if not queued:
            return 0
        with self._changed:
            self._pending.extend(queued)
            del self._pending[:-PENDING]
            self._changed.notify(len(queued))
        if not self._threads:
            self._start()
        return len(queued)

    def _start(self) -> None:
        for number in range(THREADS):
            thread = threading.Thread(target=self._work, name=f"layerfs-dirahead-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if self._closing:
                    return
                directory, copies = self._pending.pop()
            if directory is not None and directory.loader is None:
                continue  # the index read it meanwhile
            below: list[tuple[Node | None, _Copies]] = []
            for root, path in copies:
                below += [(None, [(root, subdir)]) for subdir in _read_copy(root, path)]
            # Then on down, depth first, as the walk goes (its first directory on top).
            with self._changed:
                self.copies_read += len(copies)
                self._pending.extend(reversed(below))
                del self._pending[:-PENDING]
                self._changed.notify(len(below))

    def close(self) -> None:
        """Stop the threads (before the layer roots are closed)."""
        with self._changed:
            self._closing = True
            self._pending.clear()
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        if self._threads:
            log.debug("directory read-ahead: %d copies read", self.copies_read)
        self._threads.clear()


def _read_copy(root: int, path: bytes) -> list[bytes]:
    """List one copy of a directory and lstat its entries (runs in a worker
    thread); its subdirectories' paths, sorted as the walk enters them."""
    subdirs: list[bytes] = []
    try:
        fd = open_beneath(root, path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        log.debug("read-ahead of directory %s: %s", os.fsdecode(path), exc.strerror)
        return subdirs
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.stat(follow_symlinks=False) and entry.is_dir(follow_symlinks=False):
                    subdirs.append(os.fsencode(entry.name))
    except OSError as exc:
        log.debug("read-ahead of directory %s: %s", os.fsdecode(path), exc.strerror)
    finally:
        os.close(fd)
    prefix = path + b"/" if path else b""
    return [prefix + name for name in sorted(subdirs)]
