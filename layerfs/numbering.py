"""The inode number of each entry the loader reads.

An entry's number comes from its merged path (:mod:`layerfs.inodes`); an entry
of the upper dir that was renamed keeps the number recorded beside it (the
kernel's ``overlay.origin``-like xattr, see :func:`layerfs.whiteouts.kept_inode`);
the names of one hard-linked inode of a layer share one number, derived from
the layer and the backing inode so it does not depend on which name is read
first. No I/O: the caller passes what it read.
"""

from __future__ import annotations

import os

from .inodes import InodeNumbers
from .whiteouts import kept_inode


class EntryNumbers:
    """Numbers for the entries of one tree (sharing its :class:`InodeNumbers`)."""

    def __init__(self, inodes: InodeNumbers) -> None:
        self.inodes = inodes
        self._links: dict[tuple[int, int, int], int] = {}
        """The number of each hard-linked inode of a layer met so far."""
        self.linked: set[int] = set()
        """The numbers given to hard-linked inodes (whose other names may be unread)."""

    def number(self, path: bytes, xattrs: dict[bytes, bytes]) -> int:
        """The number of a new node at merged ``path`` (``xattrs``: its overlay
        xattrs if in the upper): its path's, or the one it kept from before a rename."""
        kept = kept_inode(xattrs)
        if kept is not None:
            return self.inodes.claim(kept, path)
        return self.inodes.assign(path)

    def link_number(self, position: int, path: bytes, st: os.stat_result,
                    xattrs: dict[bytes, bytes]) -> int:
        """The number shared by the names of one hard-linked inode of layer
        ``position``, or the one the upper dir kept for it."""
        key = (position, st.st_dev, st.st_ino)
        number = self._links.get(key)
        if number is None:
            kept = kept_inode(xattrs)
            if kept is not None:
                number = self.inodes.claim(kept, path)
            else:
                number = self.inodes.assign(b"\0hard link %d %d" % (position, st.st_ino))
            self._links[key] = number
            self.linked.add(number)
        return number

    def join(self, position: int, st: os.stat_result, number: int) -> None:
        """Names of inode ``st`` of layer ``position`` get ``number`` (a lower file
        copied up through the inode index: its names read later join its group)."""
        self._links[(position, st.st_dev, st.st_ino)] = number
        self.linked.add(number)
