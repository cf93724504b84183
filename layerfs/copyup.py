"""Copy-up: making the upper dir provide an entry of the lower layers, as the kernel does.

An entry from a lower layer is copied up before it changes -- data, owner,
mode, times and xattrs, parent dirs first -- and keeps its inode number; a
metadata-only copy (``metacopy=on``) gets its data at its first change.
Hard-linked lower names stay one inode in one of two ways:

- by default they are copied up together (every name linked in the upper);
- with ``index=on`` and a work dir, as the kernel's inode index does: only
  the changed name is copied up, through an entry of ``WORKDIR/index`` in
  the kernel's format (:mod:`layerfs.hardlinkindex`); the other names stay
  lower, show that inode, and are linked up from the entry when they
  change (or are removed or renamed, as the kernel's ovl_nlink_start).

Each copy is built and installed by :class:`~layerfs.upperdir.UpperDir`,
then recorded in the merged tree.

:class:`CopyUp` is the base of :class:`~layerfs.upper.Upper`: it also holds
what every change shares -- the index, the tree, the upper dir, re-reading an
upper node's attributes and recording the inode number it keeps.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable

from .backing import open_for_reading
from .changes import Changing, one_change
from .diskattrs import Attributes
from .hardlinkindex import nlink_value
from .index import Node, PathIndex
from .inodes import InodeNumbers
from .tree import IndexEntry
from .upperdir import UpperDir
from .whiteouts import backing_xattr_name

# Copy-ups of bigger files run in a worker thread, not to stall other requests.
SLOW_COPY_BYTES = 1 << 20


class CopyUp(Changing):
    """Copies entries of the lower layers of ``index`` up into ``disk``."""

    def __init__(self, index: PathIndex, disk: UpperDir) -> None:
        super().__init__()
        if index.upper is None:
            raise ValueError("the index has no upper layer")
        self.index = index
        self.tree = index.tree
        """Where each change is recorded (the index's tree; its layer views are read
        through ``index``)."""
        self.disk = disk
        self.upper = index.upper
        self.hardlinks = index.hardlinks
        """The inode index with ``index=on`` (None: groups are copied up whole)."""

    # -- shared by every change ---------------------------------------------------------

    def refresh(self, node: Node) -> None:
        """Re-read the attributes of an upper node from the upper dir."""
        if self.tree.is_upper(node) and self.tree.is_attached(node):
            self.tree.set_stat(node, self.disk.lstat(node.path()))
        elif node.ino in self.tree.indexed and self.hardlinks is not None:
            self.tree.set_stat(node, os.lstat(self.hardlinks.path(
                self.tree.indexed[node.ino].name)))

    def _keep_number(self, node: Node, *, fresh: bool = False) -> None:
        """Make ``node`` keep its inode number across remounts where its path
        alone would not give it (renamed, hard-linked, or in place of a removed
        entry). ``fresh``: nothing is recorded yet, so nothing to clear."""
        path = node.path()
        linked = node.children is None and node.nlink > 1
        if node.ino != InodeNumbers.natural(path) or linked:
            self.disk.keep_inode(path, node.ino)
        elif not fresh:
            self.disk.keep_inode(path, None)
        else:
            return
        # Writing the xattr changed its ctime: show that one from the start, not
        # a ctime that moves later with nothing changed.
        self.refresh(node)

    # -- copy-up ------------------------------------------------------------------------

    @one_change
    def copy_up(self, node: Node, *, with_data: bool = True) -> None:
        """Make the upper layer provide ``node`` (and its parents, first), as one change."""
        self._copy_up(node, with_data=with_data)

    def needs_data_copy(self, node: Node) -> bool:
        """Whether copying ``node`` up moves enough file data to be worth a
        worker thread (small copies are quicker than the hand-over)."""
        return (not self.tree.is_upper(node) and stat.S_ISREG(node.mode)
                and node.size > SLOW_COPY_BYTES)

    def _copy_up(self, node: Node, *, with_data: bool = True) -> None:
        """The copy-up step of a change. A metadata-only copy gets its data now:
        any change, even a rename, makes it a plain upper file."""
        if self.tree.is_upper(node):
            if node.ino in self.tree.data_elsewhere:
                self._copy_up_one(node, with_data=with_data)
            return
        chain = []
        current: Node | None = node
        while current is not None and not self.tree.is_upper(current):
            chain.append(current)
            current = current.parent
        for item in reversed(chain):
            self._copy_up_one(item, with_data=with_data or item is not node)

    def _shown_xattrs(self, node: Node) -> dict[bytes, bytes]:
        """The xattrs ``node`` shows, under the names the upper dir stores them."""
        values = {}
        for name in self.index.list_xattrs(node):
            stored = backing_xattr_name(name)
            if stored is None:
                continue
            try:
                values[stored] = self.index.get_xattr(node, name)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.EPERM, errno.EACCES, errno.ENOTSUP):
                    raise
        return values

    def indexes(self, node: Node) -> bool:
        """Whether ``node`` is a lower name of a hard-linked file that the inode
        index keeps one inode (``index=on``): copied up alone, through the index."""
        return (self.hardlinks is not None and node.children is None
                and not self.tree.is_upper(node) and node.ino not in self.tree.data_elsewhere
                and (node.ino in self.tree.indexed or node.nlink > 1))

    def _copy_up_one(self, node: Node, *, with_data: bool) -> None:
        assert node.parent is not None
        if self.indexes(node) and self._copy_up_indexed(node):
            return
        position, relpath = self.index.data_backing(node)
        layer = self.index.layers[position]
        replacing = self.tree.is_upper(node)  # a metadata-only copy, made whole
        target = node.path()
        shown_nlink = node.nlink
        attrs, open_source = _copy_source(node, layer, relpath)
        with self.disk.times_kept(node.parent.path()), layer.at(relpath) as source:
            temp = self.disk.build_copy(source, attrs, xattrs=self._shown_xattrs(node),
                                        open_source=open_source, size=node.size,
                                        with_data=with_data)
            try:
                if replacing:
                    self.disk.replace(temp, target)
                else:
                    self.disk.install(temp, target)
            except BaseException:
                self.disk.discard(temp)
                raise
        self.tree.copied_up(node, self.disk.lstat(target))
        if node.ino != InodeNumbers.natural(target):
            self._keep_number(node, fresh=True)
        for alias in self.tree.aliases(node):
            if alias is node or self.tree.is_upper(alias):
                continue
            # The other names of a lower hard-linked file follow it, so the
            # inode stays one (the kernel's index=on behaviour).
            assert alias.parent is not None
            self._copy_up(alias.parent)
            with self.disk.times_kept(alias.parent.path()):
                self.disk.link(target, alias.path())
            alias.layer = self.upper
        if len(self.tree.aliases(node)) > 1:
            self.tree.set_stat(node, self.disk.lstat(target))
            self._keep_number(node, fresh=True)
        if node.children is not None or node.nlink != shown_nlink:
            # A directory's nlink shows differently once merged with an upper
            # dir; a file hard-linked in its layer to a name no longer shown
            # is one name in the upper. The kernel may hold the old count.
            self._touch(node.ino)

    def _copy_up_indexed(self, node: Node) -> bool:
        """Copy up one name of a lower hard-linked file the kernel's ``index=on``
        way: the first through a new index entry (origin and nlink xattrs, data
        whole), the others linked up from it. False if the lower file has no
        handle to name an entry by (then the group is copied up whole)."""
        hardlinks = self.hardlinks
        assert hardlinks is not None and node.parent is not None
        target = node.path()
        entry = self.tree.indexed.get(node.ino)
        with self.disk.times_kept(node.parent.path()):
            if entry is None:
                position, relpath = self.index.data_backing(node)
                layer = self.index.layers[position]
                with layer.at(relpath) as source:
                    origin = hardlinks.origin_of(source)
                if origin is None:
                    return False
                name = origin.hex().encode()
                # The merged count stays the lower one: the upper inode has the
                # index entry and this name.
                entry = IndexEntry(name, node.nlink - 2)
                xattrs = self._shown_xattrs(node)
                xattrs[hardlinks.origin_xattr] = origin
                xattrs[hardlinks.nlink_xattr] = nlink_value(entry.extra)
                self._build_entry(node, layer, relpath, xattrs, name)
            else:
                entry = IndexEntry(entry.name, entry.extra - 1)
                hardlinks.set_nlink(entry.name, entry.extra)
            self.disk.link_in(hardlinks.path(entry.name), target)
        assert self.upper is not None
        self.index.loader.numbers.join(self.upper, self.disk.lstat(target), node.ino)
        self.tree.indexed[node.ino] = entry
        # A change that comes by inode (a write, chmod) finds this upper name
        # first: it then needs no other name linked up.
        self.tree.nodes[node.ino] = node
        self.tree.copied_up(node, self.disk.lstat(target))
        self.tree.set_stat(node, self.disk.lstat(target))
        self._keep_number(node, fresh=True)
        self._touch(node.ino)  # the other names' attributes are the copy's now
        return True

    def _build_entry(self, node: Node, layer, relpath: bytes, xattrs: dict[bytes, bytes],
                     name: bytes) -> None:
        """Copy ``node``'s lower file into the index as entry ``name``."""
        assert self.hardlinks is not None
        attrs, open_source = _copy_source(node, layer, relpath)
        with layer.at(relpath) as source:
            temp = self.disk.build_copy(source, attrs, xattrs=xattrs, open_source=open_source,
                                        size=node.size)
        try:
            self.hardlinks.install(temp, name)
        except BaseException:
            self.disk.discard(temp)
            raise

    def forget_index_entry(self, node: Node) -> None:
        """``node``'s inode lost its last name: its index entry goes too."""
        entry = self.tree.indexed.pop(node.ino, None)
        if entry is not None and self.hardlinks is not None:
            self.hardlinks.remove(entry.name)


def _copy_source(node: Node, layer, relpath: bytes) -> tuple[Attributes, Callable[[], int]]:
    """What a copy of lower ``node`` (``relpath`` in ``layer``) is built from:
    its attributes, and how to open its data (fetched first if the layer is lazy)."""
    attrs = Attributes(node.mode, node.uid, node.gid, node.rdev,
                       atime_ns=node.atime_ns, mtime_ns=node.mtime_ns)

    def open_source() -> int:
        layer.ensure_content(relpath)
        root = os.open(layer.root_bytes, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return open_for_reading(root, relpath)
        finally:
            os.close(root)

    return attrs, open_source
