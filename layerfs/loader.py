"""Filling the merged tree from the layer views, one directory at a time.

A directory is read by scanning its copy in each layer that may contribute,
top down, through the layers' views (:mod:`layerfs.layerview`), stopping
after the first opaque copy and following an overlay redirect to where the
lower copies are (:mod:`layerfs.redirects`); the copies are merged by the
pure rule (:mod:`layerfs.merge`), so a subtree hidden by a whiteout, an opaque
directory or a shadowing file is never read. Each visible child becomes a
node of the tree (:mod:`layerfs.tree`) numbered by :mod:`layerfs.numbering`;
a metacopy file's data is looked up below (:mod:`layerfs.metacopy`); a
subdirectory is left unread, holding this loader's callback.

The root is read at once; :meth:`TreeLoader.load_pending` reads the rest in
the background (the daemon runs it right after mounting, so a mount is live at
once whatever the image's size), and a directory a request needs first is
read then. Reads run under one lock, since a slow change runs in a worker thread.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque
from typing import Sequence

from .errors import LayerError
from .hardlinkindex import HardlinkIndex, parse_nlink
from .layerview import LayerView
from .merge import MergedChild, merge_children
from .metacopy import metacopy_data
from .numbering import EntryNumbers
from .redirects import redirected_stack
from .scan import ScannedDir
from .tree import IndexEntry, MergedTree, Node
from .whiteouts import (
    INODE_XATTRS,
    METACOPY_XATTRS,
    NLINK_XATTRS,
    ORIGIN_XATTRS,
    REDIRECT_XATTRS,
    is_metacopy,
    redirect_of,
)

_UPPER_FILE_XATTRS = frozenset(INODE_XATTRS + METACOPY_XATTRS + REDIRECT_XATTRS
                               + NLINK_XATTRS + ORIGIN_XATTRS)

log = logging.getLogger(__name__)


class TreeLoader:
    """Reads the directories of a :class:`MergedTree` from its layers' views
    (bottom layer at position 0; ``upper``: the writable top layer's position)."""

    def __init__(self, views: Sequence[LayerView], *, upper: int | None = None,
                 hardlinks: HardlinkIndex | None = None) -> None:
        self.views = list(views)
        self.upper = upper
        self.hardlinks = hardlinks
        self._callback = self.load
        """The loader of every unread node (one bound method, shared)."""
        self._unread: deque[Node] = deque()
        """Directories not read yet, in the order met (breadth-first)."""
        self._complete = False
        self._reading = threading.RLock()
        all_layers = tuple(range(len(self.views) - 1, -1, -1))
        root_stats = {position: self.views[position].root_stat() for position in all_layers}
        meta = self._metadata_layer(all_layers, b"")
        self.tree = MergedTree(root_stats[meta], meta, all_layers, upper=upper,
                               loader=self._callback)
        self.numbers = EntryNumbers(self.tree.inodes)
        self.tree.unseen_links = lambda ino: not self._complete and ino in self.numbers.linked
        self.tree.read_everything = self.load_all

    # -- reading ---------------------------------------------------------------

    def load(self, directory: Node) -> None:
        """Read ``directory`` from the layers, if not read yet: merge its copies and
        make a node for each visible child (its subdirectories are read later).
        LayerError if a layer cannot be read; the directory stays unread then."""
        with self._reading:
            if directory.loader is None:
                return
            self._read_dir(directory)

    def load_pending(self, budget: float = 0.005) -> bool:
        """Read directories not read yet, for about ``budget`` seconds; whether any
        are left. A directory that cannot be read is logged and left for the
        request that needs it (which gets the error)."""
        deadline = time.monotonic() + budget
        while self._unread:
            directory = self._unread.popleft()
            if directory.loader is None:
                continue
            try:
                self.load(directory)
            except LayerError as exc:
                log.warning("%s", exc)
            if time.monotonic() >= deadline:
                break
        if not self._unread:
            self._complete = True
        return not self._complete

    def load_all(self) -> None:
        """Read every directory (a complete tree: for walks and hard-link groups)."""
        while self.load_pending(budget=3600.0):
            pass

    def lower_children(self, directory: Node) -> dict[bytes, MergedChild]:
        """What the layers below the upper show in ``directory``: the names a
        whiteout must hide when the upper's entry goes (kernel: "lower positive").

        Lower layers never change, so this is read once per directory (the tree
        drops it when the directory goes or turns opaque)."""
        if directory.lower_children is not None:
            return directory.lower_children
        scanned = []
        is_root = directory.parent is None
        for position in directory.layers:
            if position == self.upper:
                continue
            result = self.views[position].listing(self.tree.relpath_in(directory, position),
                                                  is_root=is_root)
            scanned.append((position, result.listing))
            if result.listing.opaque:
                break
        merged = merge_children(scanned)
        directory.lower_children = merged
        return merged

    # -- one directory -----------------------------------------------------------

    def _metadata_layer(self, dir_layers: Sequence[int], relpath: bytes) -> int:
        """The layer whose copy of a directory gives its metadata: the top-most one that
        really holds it, skipping copies an unpacker only implied as parents
        (FORMATS.md 8.5: inherit from below, as containerd and the OCI spec do)."""
        for position in dir_layers:
            if not self.views[position].is_implied(relpath):
                return position
        return dir_layers[0]

    def _upper_xattrs(self, position: int, inside: bytes) -> dict[bytes, bytes]:
        """The overlay xattrs of an entry of the upper dir that matter to the tree
        (kept inode number, metacopy, redirect); nothing for other layers."""
        if position != self.upper:
            return {}
        return self.views[position].overlay_xattrs(inside, _UPPER_FILE_XATTRS)

    def _index_entry(self, position: int, inside: bytes, st, own: dict[bytes, bytes]):
        """For a file with several links: the inode index's entry of its group
        (:mod:`layerfs.hardlinkindex`), its stat and overlay xattrs, or None. A
        lower file is looked up by its handle, an upper one by its origin."""
        hardlinks = self.hardlinks
        assert hardlinks is not None
        lower_nlink = None
        if position == self.upper:
            origin = next((own[key] for key in ORIGIN_XATTRS if key in own), None)
            if origin is None:
                return None
            name = origin.hex().encode()
            if name not in hardlinks.names:
                return None
            try:
                index_st = os.lstat(hardlinks.path(name))
            except FileNotFoundError:
                return None
            if (index_st.st_dev, index_st.st_ino) != (st.st_dev, st.st_ino):
                return None
            index_own = own
        else:
            with self.views[position].layer.at(inside) as path:
                found = hardlinks.find(path)
            if found is None:
                return None
            name, index_st, index_own = found
            lower_nlink = st.st_nlink
        value = next((index_own[key] for key in NLINK_XATTRS if key in index_own), None)
        shown = None if value is None else parse_nlink(value, index_st.st_nlink, lower_nlink)
        extra = 0 if shown is None else shown - index_st.st_nlink
        return IndexEntry(name, extra), index_st, index_own

    def _read_dir(self, directory: Node) -> None:
        relpath = directory.path()
        scanned = self._scan_merged_dir(directory)
        merged = merge_children([(position, result.listing) for position, _, result in scanned])
        dirents = {position: result.dirents for position, _, result in scanned}
        where = {position: path + b"/" if path else b"" for position, path, _ in scanned}
        # First everything that reads the layers, so that an error leaves no trace
        # (no inode number taken): the directory is read again, afresh, later.
        read = []
        for name in sorted(merged):
            child = merged[name]
            child_path = relpath + b"/" + name if relpath else name
            position = (self._metadata_layer(child.dir_layers, child_path) if child.is_dir
                        else child.layer)
            inside = where[position] + name
            st = self.views[position].stat_entry(inside, dirents[position][name])
            own = self._upper_xattrs(position, inside)
            data = None
            if stat.S_ISREG(st.st_mode) and is_metacopy(own):
                data = metacopy_data(self.views, self.tree.root_layers, position, inside,
                                     where, name, redirect_of(own))
            read.append((name, child, child_path, position, st, own, data))
        children: dict[bytes, Node] = {}
        for name, child, child_path, position, st, own, data in read:
            indexed = None
            if not child.is_dir and st.st_nlink > 1 and self.hardlinks is not None:
                indexed = self._index_entry(position, where[position] + name, st, own)
                if indexed is not None:
                    entry, st, own = indexed
            if indexed is not None:
                # One inode with the upper names of its group, wherever they are.
                assert self.upper is not None
                ino = self.numbers.link_number(self.upper, child_path, st, own)
            elif not child.is_dir and st.st_nlink > 1:
                ino = self.numbers.link_number(position, child_path, st, own)
            else:
                ino = self.numbers.number(child_path, own)
            if child.is_dir:
                node = Node(ino, name, directory, position, st, layers=child.dir_layers,
                            loader=self._callback)
                self._unread.append(node)
            else:
                node = Node(ino, name, directory, position, st)
            if indexed is not None:
                self.tree.indexed[ino] = entry
                node.nlink += entry.extra
            if data is not None:
                self.tree.data_elsewhere[ino] = data
                node.blocks = data.blocks  # the kernel shows the data's
            children[name] = node
        # Only now, all reads done, does the directory change: an error above
        # leaves it unread, to be tried again.
        self.tree.attach(directory, tuple(position for position, _, _ in scanned), children)
        for node in children.values():
            if node.ino in self.tree.indexed and node.layer == self.upper:
                self.tree.nodes[node.ino] = node  # as after its copy-up (layerfs.copyup)

    def _scan_merged_dir(self, directory: Node) -> list[tuple[int, bytes, ScannedDir]]:
        """Scan the directory in each layer that may contribute, top first,
        stopping after the first opaque copy: (position, path there, result).
        A copy with an overlay redirect sends the search below it to where the
        redirect points."""
        scanned: list[tuple[int, bytes, ScannedDir]] = []
        is_root = directory.parent is None
        stack = [(position, self.tree.known_relpath_in(directory, position))
                 for position in directory.listed_layers]
        number = 0
        followed = False  # the first redirect's stack already follows the later ones
        while number < len(stack):
            position, path = stack[number]
            result = self.views[position].listing(path, is_root=is_root)
            scanned.append((position, path, result))
            if result.listing.opaque:
                break
            if result.redirect is not None and directory.parent is not None and not followed:
                stack[number + 1:] = self._redirected_stack(directory, position, result.redirect)
                followed = True
            number += 1
        self._pin_paths(directory, stack[:len(scanned)])
        return scanned

    def _redirected_stack(self, directory: Node, position: int,
                          redirect: bytes) -> list[tuple[int, bytes]]:
        parent = directory.parent
        assert parent is not None
        parent_stack = [(q, self.tree.relpath_in(parent, q)) for q in parent.layers]
        return redirected_stack(position, redirect, parent_stack, self.tree.root_layers,
                                lambda q, path: self.views[q].probe(path))

    def _pin_paths(self, directory: Node, stack: list[tuple[int, bytes]]) -> None:
        """Record where each layer holds ``directory`` if a redirect moved it."""
        parent = directory.parent
        if parent is None:
            return
        for position, path in stack:
            inside = self.tree.known_relpath_in(parent, position)
            if path != (inside + b"/" + directory.name if inside else directory.name):
                self.tree.pin_paths(directory, dict(stack))
                return
