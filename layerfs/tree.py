"""The merged tree in memory: nodes, their numbers, and its changes. No I/O.

A :class:`Node` is one visible entry: the attributes of the copy that won (the
top-most layer's), the layer position that provides it and, for a directory,
the positions whose copies merge into it. A directory not read yet holds a
loader callback (:attr:`Node.loader`, see :mod:`layerfs.loader`) that fills in
its children, layers and paths when they are first asked for, so nothing
outside knows whether it has been read.

:class:`MergedTree` holds the nodes by inode number, the hard-link groups and
the names removed while the kernel still knows them; its changes (add, link,
remove, move, exchange, copy-up, opaque) are the records :mod:`layerfs.upper`
makes after each change on disk, so the tree always equals what a fresh scan
of the layers would give. Nothing here reads a layer: a test builds a tree
from stat results alone.
"""

from __future__ import annotations

import os
import stat
from typing import Callable, Iterator, NamedTuple

from .inodes import ROOT_INODE, InodeNumbers

Loader = Callable[["Node"], None]
"""Reads a directory node from the layers (its children, layers, paths)."""


class DataElsewhere(NamedTuple):
    """Where the data of a metadata-only copy is (the kernel's metacopy=on)."""
    position: int
    path: bytes
    blocks: int


class IndexEntry(NamedTuple):
    """A hard-linked lower file copied up through the kernel's inode index
    (``index=on``, :mod:`layerfs.hardlinkindex`): its entry's name, and what
    its names show as nlink beyond the upper inode's count."""
    name: bytes
    extra: int


class Node:
    """One visible entry of the merged tree."""

    __slots__ = (
        "ino", "name", "parent", "layer", "_layers", "_children", "_paths", "loader",
        "sorted_names", "lower_children", "mode", "uid", "gid", "size", "blocks", "nlink",
        "rdev", "atime_ns", "mtime_ns", "ctime_ns",
    )

    def __init__(self, ino: int, name: bytes, parent: "Node | None", layer: int,
                 st: os.stat_result, *, layers: tuple[int, ...] | None = None,
                 loader: Loader | None = None) -> None:
        self.ino = ino
        self.name = name
        self.parent = parent
        self.layer = layer
        self._layers: tuple[int, ...] = layers if layers is not None else (layer,)
        self._children: dict[bytes, Node] | None = {} if stat.S_ISDIR(st.st_mode) else None
        self._paths: dict[int, bytes] | None = None
        self.loader = loader
        """Reads this directory when first needed (None once read, and for non-dirs)."""
        self.sorted_names: list[bytes] | None = None
        self.lower_children: dict | None = None
        """What the layers below the upper show in this dir, once asked (see
        :meth:`layerfs.loader.TreeLoader.lower_children`); dropped when that changes."""
        self.set_stat(st)

    def _load(self) -> None:
        loader = self.loader
        if loader is not None:
            loader(self)

    @property
    def is_read(self) -> bool:
        """Whether the node's own entries are known (always, but for a dir not read yet)."""
        return self.loader is None

    @property
    def children(self) -> "dict[bytes, Node] | None":
        """A directory's entries by name (None for anything else)."""
        if self.loader is not None:
            self._load()
        return self._children

    @property
    def layers(self) -> tuple[int, ...]:
        """The positions whose copies of the entry merge into it, top first."""
        if self.loader is not None:
            self._load()
        return self._layers

    @layers.setter
    def layers(self, value: tuple[int, ...]) -> None:
        if self.loader is not None:
            self._load()
        self._layers = value

    @property
    def paths(self) -> dict[int, bytes] | None:
        """Where a redirected dir lives in the layers below (position -> path),
        where that differs from its parent's path there plus its name."""
        if self.loader is not None:
            self._load()
        return self._paths

    @paths.setter
    def paths(self, value: dict[int, bytes] | None) -> None:
        if self.loader is not None:
            self._load()
        self._paths = value

    @property
    def listed_layers(self) -> tuple[int, ...]:
        """The positions known to hold the directory before it is read (reads nothing)."""
        return self._layers

    def read(self, layers: tuple[int, ...], children: "dict[bytes, Node]") -> None:
        """Record what reading the directory found (by its loader)."""
        self._layers = layers
        self._children = children
        self.sorted_names = None
        self.loader = None

    def set_stat(self, st: os.stat_result) -> None:
        self.mode = st.st_mode
        self.uid = st.st_uid
        self.gid = st.st_gid
        self.size = st.st_size
        self.blocks = st.st_blocks
        self.nlink = st.st_nlink
        self.rdev = st.st_rdev
        self.atime_ns = st.st_atime_ns
        self.mtime_ns = st.st_mtime_ns
        self.ctime_ns = st.st_ctime_ns

    @property
    def is_dir(self) -> bool:
        return self._children is not None

    @property
    def is_merged_dir(self) -> bool:
        """A directory that more than one layer contributes to (overlay's "merge dir")."""
        return self._children is not None and len(self.layers) > 1

    @property
    def shown_nlink(self) -> int:
        # As the kernel overlay: counting a merged directory's subdirectories
        # is not worth it, and nlink=1 tells find(1) not to rely on it.
        return 1 if self.is_merged_dir else self.nlink

    def path(self) -> bytes:
        """Path relative to the root of the merged tree (b"" for the root)."""
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return b"/".join(reversed(parts))

    def listing(self) -> list[bytes]:
        """Child names in a stable order (for readdir offsets)."""
        if self.sorted_names is None:
            assert self.children is not None
            self.sorted_names = sorted(self.children)
        return self.sorted_names

    def stat_result(self) -> os.stat_result:
        """A stat result with the node's attributes (to copy them to a new alias)."""
        fields = [self.mode, self.ino, 0, self.nlink, self.uid, self.gid, self.size,
                  self.atime_ns // 10**9, self.mtime_ns // 10**9, self.ctime_ns // 10**9]
        return os.stat_result(fields, {
            "st_atime_ns": self.atime_ns, "st_mtime_ns": self.mtime_ns,
            "st_ctime_ns": self.ctime_ns, "st_blocks": self.blocks, "st_rdev": self.rdev,
        })


class MergedTree:
    """The nodes of a merged layer stack by inode number, and the changes to them.

    ``upper``: the position of the writable upper layer (always the top), or None."""

    def __init__(self, root_stat: os.stat_result, root_layer: int,
                 root_layers: tuple[int, ...], *, upper: int | None = None,
                 loader: Loader | None = None) -> None:
        self.upper = upper
        self.inodes = InodeNumbers()
        self.root_layers = root_layers
        """Every layer position, top first (the root's stack as first read)."""
        self.root = Node(ROOT_INODE, b"", None, root_layer, root_stat, layers=root_layers,
                         loader=loader)
        self.nodes: dict[int, Node] = {ROOT_INODE: self.root}
        self.links: dict[int, list[Node]] = {}
        """Every name of each inode that has several (hard links), primary first."""
        self.orphans: set[int] = set()
        """Inodes whose last name was removed; kept while the kernel knows them."""
        self.data_elsewhere: dict[int, DataElsewhere] = {}
        self.indexed: dict[int, IndexEntry] = {}
        """Hard-link groups kept one inode by an index entry: their lower names
        show the entry's inode (see :class:`IndexEntry`)."""
        """Upper files that are metadata-only copies (the kernel's metacopy=on),
        by inode: the lower file holding their data."""
        self.redirected = False
        """Whether some dir's copies are elsewhere in the layers below (then paths
        inside a layer differ from merged paths)."""
        self.unseen_links: Callable[[int], bool] = lambda ino: False
        """Whether an inode may have names in directories not read yet (the
        loader's answer); :meth:`aliases` then has every directory read first."""
        self.read_everything: Callable[[], None] = lambda: None

    # -- queries -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, ino: int) -> Node | None:
        return self.nodes.get(ino)

    def lookup(self, parent: Node, name: bytes) -> Node | None:
        if parent.children is None:
            return None
        return parent.children.get(name)

    def resolve(self, path: bytes | str) -> Node | None:
        """The node at a merged-tree path (absolute or relative), or None."""
        node: Node | None = self.root
        for part in os.fsencode(path).split(b"/"):
            if not part or part == b".":
                continue
            if node is None:
                return None
            if part == b"..":
                node = node.parent or node
                continue
            node = self.lookup(node, part)
        return node

    def walk(self) -> Iterator[tuple[bytes, Node]]:
        """Every node with its path, parents before children, in name order."""
        stack = [(b"", self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if node.children is not None:
                for name in reversed(node.listing()):
                    child = node.children[name]
                    stack.append((path + b"/" + name if path else name, child))

    def relpath_in(self, node: Node, position: int) -> bytes:
        """The path of ``node`` inside layer ``position`` (which differs from its
        merged path below a renamed dir: overlay's redirects)."""
        if node.loader is not None:
            node.loader(node)  # a redirect of its own is known once it is read
        return self.known_relpath_in(node, position)

    def known_relpath_in(self, node: Node, position: int) -> bytes:
        """:meth:`relpath_in` from what is known now (for the loader, while it reads)."""
        if not self.redirected:
            return node.path()
        parts = []
        current: Node | None = node
        while current is not None and current.parent is not None:
            if current._paths is not None and position in current._paths:
                parts.append(current._paths[position])
                break
            parts.append(current.name)
            current = current.parent
        return b"/".join(reversed(parts))

    def is_upper(self, node: Node) -> bool:
        """Whether the upper layer provides ``node`` (created or copied up)."""
        return node.layer == self.upper

    def has_lower(self, node: Node) -> bool:
        """Whether a layer below the upper contributes to ``node``: a lower file, or a
        lower or merged dir (the kernel's "merge or lower" type)."""
        if node.children is None:
            return node.layer != self.upper
        return any(position != self.upper for position in node.layers)

    def is_attached(self, node: Node) -> bool:
        """Whether ``node`` still has a name in the tree (not removed while open)."""
        while node.parent is not None:
            if node.parent.children is None or node.parent.children.get(node.name) is not node:
                return False
            node = node.parent
        return node is self.root

    def aliases(self, node: Node) -> list[Node]:
        """Every name of ``node``'s inode (itself alone unless hard-linked)."""
        if self.unseen_links(node.ino):
            self.read_everything()  # its other names may be in directories not read yet
        return self.links.get(node.ino) or [node]

    # -- what reading a directory found ------------------------------------------

    def attach(self, directory: Node, layers: tuple[int, ...], children: dict[bytes, Node]) -> None:
        """Record a directory as read: its layers and its children (the names of a
        hard-linked inode join its group)."""
        directory.read(layers, children)
        for node in children.values():
            if node.ino in self.nodes and node._children is None:
                self.links.setdefault(node.ino, [self.nodes[node.ino]]).append(node)
            else:
                self.nodes[node.ino] = node

    def pin_paths(self, directory: Node, paths: dict[int, bytes]) -> None:
        """Record where each layer holds ``directory`` (a redirect moved it)."""
        directory._paths = paths
        self.redirected = True

    # -- changes (the writable upper) ------------------------------------------------

    def add(self, parent: Node, name: bytes, st: os.stat_result) -> Node:
        """Record a new upper entry ``name`` in ``parent``."""
        assert parent.children is not None and self.upper is not None
        path = parent.path() + b"/" + name if parent.parent is not None else name
        node = Node(self.inodes.assign(path), name, parent, self.upper, st)
        parent.children[name] = node
        self.nodes[node.ino] = node
        parent.sorted_names = None
        return node

    def add_link(self, target: Node, parent: Node, name: bytes) -> Node:
        """Record a new name of ``target``'s inode (a hard link made in the upper)."""
        assert parent.children is not None and self.upper is not None
        node = Node(target.ino, name, parent, self.upper, target.stat_result())
        group = self.links.setdefault(target.ino, [target])
        group.append(node)
        parent.children[name] = node
        self.orphans.discard(target.ino)
        parent.sorted_names = None
        return node

    def remove(self, node: Node) -> None:
        """Take ``node``'s name out of the tree; the inode lives on while it has
        other names or the kernel holds it (see :meth:`forget`)."""
        parent = node.parent
        assert parent is not None and parent.children is not None
        if parent.children.get(node.name) is node:
            del parent.children[node.name]
            parent.sorted_names = None
        group = self.links.get(node.ino)
        if group is not None:
            if node in group:
                group.remove(node)
            if self.nodes.get(node.ino) is node and group:
                # An upper name first: a change by inode needs no copy-up then.
                self.nodes[node.ino] = next(
                    (alias for alias in group if alias.layer == self.upper), group[0])
            if len(group) <= 1:
                del self.links[node.ino]
            if group:
                return
        node.lower_children = None
        self.orphans.add(node.ino)

    def _pin_lower_paths(self, node: Node) -> None:
        if node.children is not None and self.has_lower(node):
            node.paths = {position: self.relpath_in(node, position)
                          for position in node.layers if position != self.upper}
            self.redirected = True

    def exchange(self, one: Node, other: Node) -> None:
        """Swap the names of two nodes (RENAME_EXCHANGE)."""
        self._pin_lower_paths(one)
        self._pin_lower_paths(other)
        one_parent, other_parent = one.parent, other.parent
        assert one_parent is not None and one_parent.children is not None
        assert other_parent is not None and other_parent.children is not None
        one_name, other_name = one.name, other.name
        one_parent.children[one_name] = other
        other_parent.children[other_name] = one
        one.parent, one.name = other_parent, other_name
        other.parent, other.name = one_parent, one_name
        one_parent.sorted_names = None
        other_parent.sorted_names = None

    def move(self, node: Node, parent: Node, name: bytes) -> None:
        """Give ``node`` a new name (the old one must be free of other nodes now).

        A dir keeps its lower layers where they are: it is redirected."""
        old_parent = node.parent
        assert old_parent is not None and old_parent.children is not None
        assert parent.children is not None
        self._pin_lower_paths(node)
        if old_parent.children.get(node.name) is node:
            del old_parent.children[node.name]
            old_parent.sorted_names = None
        node.parent = parent
        node.name = name
        parent.children[name] = node
        parent.sorted_names = None

    def forget(self, ino: int) -> None:
        """The kernel no longer knows ``ino``: drop it if it has no name left."""
        if ino in self.orphans:
            self.orphans.discard(ino)
            self.nodes.pop(ino, None)

    def copied_up(self, node: Node, st: os.stat_result) -> None:
        """``node`` is now provided by the upper layer (its dir merges with the
        layers below as before)."""
        assert self.upper is not None
        node.layer = self.upper
        self.data_elsewhere.pop(node.ino, None)
        if node.children is not None and node.layers[0] != self.upper:
            node.layers = (self.upper,) + node.layers
        node.set_stat(st)

    def made_opaque(self, node: Node) -> None:
        """``node``'s upper dir hides every lower layer now."""
        assert self.upper is not None
        node.layers = (self.upper,)
        node.paths = None
        node.lower_children = None

    def set_stat(self, node: Node, st: os.stat_result) -> None:
        """New attributes for ``node``'s inode, under every name it has."""
        elsewhere = self.data_elsewhere.get(node.ino)
        indexed = self.indexed.get(node.ino)
        for alias in self.aliases(node):
            alias.set_stat(st)
            if indexed is not None:
                alias.nlink += indexed.extra  # the names still lower count too
            if elsewhere is not None:
                alias.blocks = elsewhere.blocks  # the kernel shows the data's
