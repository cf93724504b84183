"""The merged tree of a layer stack, as the mount and the explore tools ask it.

:class:`PathIndex` puts together the three parts of an index, each in its own
module, and answers the questions that need more than one of them:

- :mod:`layerfs.layerview`: one layer's entries with its recorded metadata
  (``index.views[position]``, what the explore tools read a layer through);
- :mod:`layerfs.tree`: the merged tree in memory and its changes, no I/O
  (``index.tree``, what :mod:`layerfs.upper` records its changes in);
- :mod:`layerfs.loader`: fills the tree from the views through the merge rule,
  a directory when first needed or in the background (:meth:`load_pending`).

Most methods here are one-line delegations kept so that fs.py, mount.py,
deferred.py and the explore tools keep one object to hold: the tree's queries
(get, lookup, resolve, walk, is_upper, is_attached, has_lower, aliases,
set_stat, forget) belong to :class:`~layerfs.tree.MergedTree` and the loading
ones to :class:`~layerfs.loader.TreeLoader`; the reads of a node's backing
entry (xattrs, symlink target) join the tree's position to a layer view.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from .errors import LayerError
from .hardlinkindex import HardlinkIndex
from .layer import Layer
from .layerview import LayerView, shown_xattr, shown_xattr_names
from .loader import TreeLoader
from .merge import MergedChild
from .tree import DataElsewhere, MergedTree, Node

__all__ = ["LAYER_XATTR", "OWNER_XATTR", "DataElsewhere", "Node", "PathIndex"]

LAYER_XATTR = b"user.layerfs.layer"
OWNER_XATTR = b"user.layerfs.owner"


class PathIndex:
    """The merged tree of a layer stack, bottom layer at position 0."""

    def __init__(self, layers: Sequence[Layer], *,
                 hardlinks: HardlinkIndex | None = None) -> None:
        if not layers:
            raise LayerError("no layers to mount")
        self.layers = list(layers)
        self.views = [LayerView(layer) for layer in self.layers]
        """Each layer's own entries (see :mod:`layerfs.layerview`)."""
        self.upper: int | None = len(self.layers) - 1 if self.layers[-1].upper else None
        """Position of the writable upper layer, if there is one (always the top)."""
        self.hardlinks = hardlinks
        """The work dir's inode index, with ``index=on`` (see :mod:`layerfs.hardlinkindex`)."""
        self.loader = TreeLoader(self.views, upper=self.upper, hardlinks=hardlinks)
        self.tree: MergedTree = self.loader.tree
        self.root = self.tree.root
        self.load(self.root)

    # -- the tree's (thin delegations) ----------------------------------------------

    def __len__(self) -> int:
        """The number of inodes known so far (all of them once :meth:`load_all` ran)."""
        return len(self.tree)

    @property
    def nodes(self) -> dict[int, Node]:
        return self.tree.nodes

    @property
    def data_elsewhere(self) -> dict[int, DataElsewhere]:
        return self.tree.data_elsewhere

    def get(self, ino: int) -> Node | None:
        return self.tree.get(ino)

    def lookup(self, parent: Node, name: bytes) -> Node | None:
        return self.tree.lookup(parent, name)

    def resolve(self, path: bytes | str) -> Node | None:
        return self.tree.resolve(path)

    def walk(self) -> Iterator[tuple[bytes, Node]]:
        return self.tree.walk()

    def relpath_in(self, node: Node, position: int) -> bytes:
        return self.tree.relpath_in(node, position)

    def is_upper(self, node: Node) -> bool:
        return self.tree.is_upper(node)

    def has_lower(self, node: Node) -> bool:
        return self.tree.has_lower(node)

    def is_attached(self, node: Node) -> bool:
        return self.tree.is_attached(node)

    def aliases(self, node: Node) -> list[Node]:
        return self.tree.aliases(node)

    def set_stat(self, node: Node, st: os.stat_result) -> None:
        self.tree.set_stat(node, st)

    def forget(self, ino: int) -> None:
        self.tree.forget(ino)

    # -- the loader's (thin delegations) -----------------------------------------------

    def load(self, directory: Node) -> None:
        self.loader.load(directory)

    def load_pending(self, budget: float = 0.005) -> bool:
        return self.loader.load_pending(budget)

    def load_all(self) -> None:
        self.loader.load_all()

    def lower_children(self, directory: Node) -> dict[bytes, MergedChild]:
        return self.loader.lower_children(directory)

    # -- a node's backing entry ------------------------------------------------------------

    def data_backing(self, node: Node) -> tuple[int, bytes]:
        """The layer position and path holding ``node``'s file data: its backing
        entry's, or a lower file's for a metadata-only copy. A lower name of a group
        the inode index keeps one inode reads the index entry: an absolute path."""
        index_entry = self._index_entry_of(node)
        if index_entry is not None:
            assert self.upper is not None
            return self.upper, index_entry
        elsewhere = self.tree.data_elsewhere.get(node.ino)
        if elsewhere is not None:
            return elsewhere.position, elsewhere.path
        return node.layer, self.tree.relpath_in(node, node.layer)

    def _index_entry_of(self, node: Node) -> bytes | None:
        """For a lower name of a group the inode index keeps one inode: the path of
        the index entry, which is that inode (data, attributes, xattrs); else None."""
        indexed = self.tree.indexed.get(node.ino)
        if indexed is None or node.layer == self.upper or self.hardlinks is None:
            return None
        return self.hardlinks.path(indexed.name)

    def backing(self, node: Node) -> tuple[Layer, bytes]:
        """The layer providing ``node`` and the path of its data inside that layer."""
        return self.layers[node.layer], self.tree.relpath_in(node, node.layer)

    def list_xattrs(self, node: Node) -> list[bytes]:
        """The xattr names ``node`` shows: its backing entry's, less overlay-private ones."""
        index_entry = self._index_entry_of(node)
        if index_entry is not None:
            return shown_xattr_names(index_entry)
        return self.views[node.layer].list_xattrs(self.tree.relpath_in(node, node.layer))

    def get_xattr(self, node: Node, name: bytes) -> bytes:
        """The value of xattr ``name`` of ``node``; OSError(ENODATA) if it has none.

        ``user.layerfs.layer`` names the layer providing the entry ("3 sha256:..."); it is
        answered only when asked for by name, never listed, so copies do not carry it.
        ``user.layerfs.owner`` likewise gives the owner the layers store ("UID:GID"),
        whatever the mount's id options show (layerfs/idmap.py)."""
        if name == LAYER_XATTR:
            provider = self.layers[node.layer]
            return f"{node.layer + 1} {provider.diff_id or provider.describe()}".encode()
        if name == OWNER_XATTR:
            return f"{node.uid}:{node.gid}".encode()
        index_entry = self._index_entry_of(node)
        if index_entry is not None:
            return shown_xattr(index_entry, name)
        return self.views[node.layer].get_xattr(self.tree.relpath_in(node, node.layer), name)

    def read_link(self, node: Node) -> bytes:
        return self.views[node.layer].read_link(self.tree.relpath_in(node, node.layer))
