"""The in-memory path index of a merged layer stack.

Built by walking the layers top-down with the merge rule
(:mod:`layerfs.merge`): a subtree hidden by a whiteout, an opaque directory or
a shadowing file is never read. Each directory is read once, when first
needed or by :meth:`PathIndex.load_pending` (which the daemon runs in the
background right after mounting, so a mount is live at once whatever the
image's size); afterwards its lookups, attributes and listings are answered
from memory, O(1) in the number of layers.

A :class:`Node` holds the attributes of the entry that won (the top-most
layer's), the layer position that provides it, and for a directory the layer
positions whose copies merge into it. A directory not read yet loads itself
when its children, layers or paths are first asked for, so nothing outside
this module needs to know whether it has been read.

With a writable upper dir (the top layer, ``Layer.upper``) the index also
changes while mounted: :mod:`layerfs.upper` decides each change and records
it here (nodes added, removed, moved, copied up), so the index always equals
what a fresh scan of the layers would give.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque
from typing import Iterator, NamedTuple, Sequence

from .errors import LayerError
from .inodes import ROOT_INODE, InodeNumbers
from .layer import Layer
from .layerview import LayerView
from .merge import MergedChild, merge_children
from .redirects import redirected_stack
from .scan import ScannedDir
from .whiteouts import (
    INODE_XATTRS,
    METACOPY_XATTRS,
    REDIRECT_XATTRS,
    is_metacopy,
    kept_inode,
    redirect_of,
)

_UPPER_FILE_XATTRS = frozenset(INODE_XATTRS + METACOPY_XATTRS + REDIRECT_XATTRS)
_METACOPY_XATTR_SET = frozenset(METACOPY_XATTRS)

LAYER_XATTR = b"user.layerfs.layer"

log = logging.getLogger(__name__)


class DataElsewhere(NamedTuple):
    """Where the data of a metadata-only copy is (the kernel's metacopy=on)."""
    position: int
    path: bytes
    blocks: int


class Node:
    """One visible entry of the merged tree."""

    __slots__ = (
        "ino", "name", "parent", "layer", "_layers", "_children", "_paths", "loader",
        "sorted_names", "mode", "uid", "gid", "size", "blocks", "nlink", "rdev",
        "atime_ns", "mtime_ns", "ctime_ns",
    )

    def __init__(self, ino: int, name: bytes, parent: "Node | None", layer: int,
                 st: os.stat_result) -> None:
        self.ino = ino
        self.name = name
        self.parent = parent
        self.layer = layer
        self._layers: tuple[int, ...] = (layer,)
        self._children: dict[bytes, Node] | None = {} if stat.S_ISDIR(st.st_mode) else None
        self._paths: dict[int, bytes] | None = None
        self.loader: PathIndex | None = None
        """The index that still has to read this directory (None once read)."""
        self.sorted_names: list[bytes] | None = None
        self.set_stat(st)

    def _load(self) -> None:
        loader = self.loader
        if loader is not None:
            loader.load(self)

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


class PathIndex:
    """The merged tree of a layer stack, bottom layer at position 0."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        if not layers:
            raise LayerError("no layers to mount")
        self.layers = list(layers)
        self.inodes = InodeNumbers()
        self.nodes: dict[int, Node] = {}
        self.views = [LayerView(layer) for layer in self.layers]
        """Each layer's own entries (see :mod:`layerfs.layerview`)."""
        self.upper: int | None = len(self.layers) - 1 if self.layers[-1].upper else None
        """Position of the writable upper layer, if there is one (always the top)."""
        self.links: dict[int, list[Node]] = {}
        """Every name of each inode that has several (hard links), primary first."""
        self.orphans: set[int] = set()
        """Inodes whose last name was removed; kept while the kernel knows them."""
        self._lower_children: dict[int, dict[bytes, MergedChild]] = {}
        self._redirected = False
        self._link_numbers: dict[tuple[int, int, int], int] = {}
        """The number of each hard-linked inode of a layer met so far."""
        self._link_numbers_given: set[int] = set()
        self.data_elsewhere: dict[int, DataElsewhere] = {}
        """Upper files that are metadata-only copies (the kernel's metacopy=on),
        by inode: the lower file holding their data."""
        self._unread: deque[Node] = deque()
        """Directories not read yet, in the order met (breadth-first)."""
        self._complete = False
        self._reading = threading.RLock()
        """Held while a directory is read (a slow change runs in a worker thread)."""
        self.root = self._make_root()
        self.load(self.root)

    # -- queries -----------------------------------------------------------

    def __len__(self) -> int:
        """The number of inodes known so far (all of them once :meth:`load_all` ran)."""
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

    def data_backing(self, node: Node) -> tuple[int, bytes]:
        """The layer position and path holding ``node``'s file data: its backing
        entry's, or a lower file's for a metadata-only copy."""
        elsewhere = self.data_elsewhere.get(node.ino)
        if elsewhere is not None:
            return elsewhere.position, elsewhere.path
        return node.layer, self.relpath_in(node, node.layer)

    def backing(self, node: Node) -> tuple[Layer, bytes]:
        """The layer providing ``node`` and the path of its data inside that layer."""
        return self.layers[node.layer], self.relpath_in(node, node.layer)

    def relpath_in(self, node: Node, position: int) -> bytes:
        """The path of ``node`` inside layer ``position`` (which differs from its
        merged path below a renamed dir: overlay's redirects)."""
        if node.loader is not None:
            self.load(node)  # a redirect of its own is known once it is read
        return self._relpath_in(node, position)

    def _relpath_in(self, node: Node, position: int) -> bytes:
        if not self._redirected:
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

    def list_xattrs(self, node: Node) -> list[bytes]:
        """The xattr names ``node`` shows: its backing entry's, less overlay-private ones."""
        return self.views[node.layer].list_xattrs(self.relpath_in(node, node.layer))

    def get_xattr(self, node: Node, name: bytes) -> bytes:
        """The value of xattr ``name`` of ``node``; OSError(ENODATA) if it has none.

        ``user.layerfs.layer`` names the layer providing the entry ("3 sha256:..."); it is
        answered only when asked for by name, never listed, so copies do not carry it."""
        if name == LAYER_XATTR:
            provider = self.layers[node.layer]
            return f"{node.layer + 1} {provider.diff_id or provider.describe()}".encode()
        return self.views[node.layer].get_xattr(self.relpath_in(node, node.layer), name)

    def read_link(self, node: Node) -> bytes:
        return self.views[node.layer].read_link(self.relpath_in(node, node.layer))

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

    # -- building ------------------------------------------------------------

    def _metadata_layer(self, dir_layers: Sequence[int], relpath: bytes) -> int:
        """The layer whose copy of a directory gives its metadata: the top-most one that
        really holds it, skipping copies an unpacker only implied as parents
        (FORMATS.md 8.5: inherit from below, as containerd and the OCI spec do)."""
        for position in dir_layers:
            if not self.views[position].is_implied(relpath):
                return position
        return dir_layers[0]

    def _make_root(self) -> Node:
        top = len(self.layers) - 1
        all_layers = tuple(range(top, -1, -1))
        root_stats = {position: self.views[position].root_stat() for position in all_layers}
        meta = self._metadata_layer(all_layers, b"")
        root = Node(ROOT_INODE, b"", None, meta, root_stats[meta])
        root._layers = all_layers
        root.loader = self
        self.root_layers = all_layers
        self.nodes[ROOT_INODE] = root
        return root

    # -- reading directories -------------------------------------------------------

    def load(self, directory: Node) -> None:
        """Read ``directory`` from the layers, if not read yet: merge its copies and
        make a node for each visible child (its subdirectories are read later).
        LayerError if a layer cannot be read; the directory stays unread then."""
        with self._reading:
            if directory.loader is None:
                return
            self._read_dir(directory)

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
                data = self._data_of_metacopy(position, inside, where, name, redirect_of(own))
            read.append((name, child, child_path, position, st, own, data))
        children: dict[bytes, Node] = {}
        made: list[Node] = []
        for name, child, child_path, position, st, own, data in read:
            if not child.is_dir and st.st_nlink > 1:
                ino = self._link_number(position, child_path, st, own)
            else:
                ino = self._number(child_path, own)
            node = Node(ino, name, directory, position, st)
            if child.is_dir:
                node._layers = child.dir_layers
                node.loader = self
            if data is not None:
                self.data_elsewhere[ino] = data
                node.blocks = data.blocks  # the kernel shows the data's
            children[name] = node
            made.append(node)
        # Only now, all reads done, does the directory change: an error above
        # leaves it unread, to be tried again.
        directory._layers = tuple(position for position, _, _ in scanned)
        directory._children = children
        directory.sorted_names = None
        directory.loader = None
        for node in made:
            if node.ino in self.nodes and node._children is None:
                self.links.setdefault(node.ino, [self.nodes[node.ino]]).append(node)
            else:
                self.nodes[node.ino] = node
            if node.loader is not None:
                self._unread.append(node)

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
        """Read every directory (a complete index: for walks and hard-link groups)."""
        while self.load_pending(budget=3600.0):
            pass

    def _number(self, path: bytes, xattrs: dict[bytes, bytes]) -> int:
        """The inode number of a new node at merged ``path`` (``xattrs``: its overlay
        xattrs if in the upper): its path's, or for an entry of the upper dir the
        one it kept from before a rename."""
        kept = kept_inode(xattrs)
        if kept is not None:
            return self.inodes.claim(kept, path)
        return self.inodes.assign(path)

    def _link_number(self, position: int, path: bytes, st: os.stat_result,
                     xattrs: dict[bytes, bytes]) -> int:
        """The number shared by the names of one hard-linked inode of a layer:
        derived from the layer and the backing inode, so it does not depend on
        which name is read first; or the one the upper dir kept for it."""
        key = (position, st.st_dev, st.st_ino)
        number = self._link_numbers.get(key)
        if number is None:
            kept = kept_inode(xattrs)
            if kept is not None:
                number = self.inodes.claim(kept, path)
            else:
                number = self.inodes.assign(b"\0hard link %d %d" % (position, st.st_ino))
            self._link_numbers[key] = number
            self._link_numbers_given.add(number)
        return number

    def _upper_xattrs(self, position: int, inside: bytes) -> dict[bytes, bytes]:
        """The overlay xattrs of an entry of the upper dir that matter to the index
        (kept inode number, metacopy, redirect); nothing for other layers."""
        if position != self.upper:
            return {}
        return self.views[position].overlay_xattrs(inside, _UPPER_FILE_XATTRS)

    def _data_of_metacopy(self, position: int, inside: bytes, where: dict[int, bytes],
                          name: bytes, redirect: bytes | None) -> "DataElsewhere":
        """Where the data of a metadata-only copy is: the first real file below
        it, at its redirect (absolute, or a name in the same dir) or at its name,
        as the kernel looks it up."""
        if redirect is not None and redirect.startswith(b"/"):
            candidates = [(p, redirect.lstrip(b"/")) for p in self.root_layers if p < position]
        else:
            candidates = [(p, path + (redirect or name)) for p, path in where.items()
                          if p < position]
        for candidate, path in candidates:
            try:
                with self.layers[candidate].at(path) as full:
                    st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise LayerError.from_os_error(self.layers[candidate], path, exc) from exc
            if not stat.S_ISREG(st.st_mode):
                break
            if not self.views[candidate].overlay_xattrs(path, _METACOPY_XATTR_SET):
                    return DataElsewhere(candidate, path, st.st_blocks)
        raise LayerError(f"{os.fsdecode(self.layers[position].path_of(inside))}: a metacopy "
                         "file (metacopy=on) whose data is in no lower layer")

    def _child_relpath(self, directory: Node, position: int, name: bytes) -> bytes:
        parent = self._relpath_in(directory, position)
        return parent + b"/" + name if parent else name

    def _scan_merged_dir(self, directory: Node) -> list[tuple[int, bytes, ScannedDir]]:
        """Scan the directory in each layer that may contribute, top first,
        stopping after the first opaque copy: (position, path there, result).
        A copy with an overlay redirect sends the search below it to where the
        redirect points."""
        scanned: list[tuple[int, bytes, ScannedDir]] = []
        is_root = directory.parent is None
        stack = [(position, self._relpath_in(directory, position))
                 for position in directory._layers]
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
        parent_stack = [(q, self.relpath_in(parent, q)) for q in parent.layers]
        return redirected_stack(position, redirect, parent_stack, self.root_layers,
                                lambda q, path: self.views[q].probe(path))

    def _pin_paths(self, directory: Node, stack: list[tuple[int, bytes]]) -> None:
        """Record where each layer holds ``directory`` if a redirect moved it."""
        if directory.parent is None:
            return
        if any(path != self._child_relpath(directory.parent, position, directory.name)
               for position, path in stack):
            directory._paths = dict(stack)
            self._redirected = True

    # -- the writable upper: queries ----------------------------------------------

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
        if not self._complete and node.ino in self._link_numbers_given:
            self.load_all()  # its other names may be in directories not read yet
        return self.links.get(node.ino) or [node]

    def lower_children(self, directory: Node) -> dict[bytes, MergedChild]:
        """What the layers below the upper show in ``directory``: the names a
        whiteout must hide when the upper's entry goes (kernel: "lower positive").

        Lower layers never change, so this is computed once per directory."""
        cached = self._lower_children.get(directory.ino)
        if cached is not None:
            return cached
        scanned = []
        is_root = directory.parent is None
        for position in directory.layers:
            if position == self.upper:
                continue
            result = self.views[position].listing(self.relpath_in(directory, position),
                                                  is_root=is_root)
            scanned.append((position, result.listing))
            if result.listing.opaque:
                break
        merged = merge_children(scanned)
        self._lower_children[directory.ino] = merged
        return merged

    # -- the writable upper: changes ----------------------------------------------

    def _changed(self, directory: Node) -> None:
        directory.sorted_names = None

    def add(self, parent: Node, name: bytes, st: os.stat_result) -> Node:
        """Record a new upper entry ``name`` in ``parent``."""
        assert parent.children is not None and self.upper is not None
        path = parent.path() + b"/" + name if parent.parent is not None else name
        node = Node(self.inodes.assign(path), name, parent, self.upper, st)
        parent.children[name] = node
        self.nodes[node.ino] = node
        self._changed(parent)
        return node

    def add_link(self, target: Node, parent: Node, name: bytes) -> Node:
        """Record a new name of ``target``'s inode (a hard link made in the upper)."""
        assert parent.children is not None and self.upper is not None
        node = Node(target.ino, name, parent, self.upper, _stat_of(target))
        group = self.links.setdefault(target.ino, [target])
        group.append(node)
        parent.children[name] = node
        self.orphans.discard(target.ino)
        self._changed(parent)
        return node

    def remove(self, node: Node) -> None:
        """Take ``node``'s name out of the tree; the inode lives on while it has
        other names or the kernel holds it (see :meth:`forget`)."""
        parent = node.parent
        assert parent is not None and parent.children is not None
        if parent.children.get(node.name) is node:
            del parent.children[node.name]
            self._changed(parent)
        group = self.links.get(node.ino)
        if group is not None:
            if node in group:
                group.remove(node)
            if self.nodes.get(node.ino) is node and group:
                self.nodes[node.ino] = group[0]
            if len(group) <= 1:
                del self.links[node.ino]
            if group:
                return
        if node.children is not None:
            self._lower_children.pop(node.ino, None)
        self.orphans.add(node.ino)

    def _pin_lower_paths(self, node: Node) -> None:
        if node.children is not None and self.has_lower(node):
            node.paths = {position: self.relpath_in(node, position)
                          for position in node.layers if position != self.upper}
            self._redirected = True

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
        self._changed(one_parent)
        self._changed(other_parent)

    def move(self, node: Node, parent: Node, name: bytes) -> None:
        """Give ``node`` a new name (the old one must be free of other nodes now).

        A dir keeps its lower layers where they are: it is redirected."""
        old_parent = node.parent
        assert old_parent is not None and old_parent.children is not None
        assert parent.children is not None
        self._pin_lower_paths(node)
        if old_parent.children.get(node.name) is node:
            del old_parent.children[node.name]
            self._changed(old_parent)
        node.parent = parent
        node.name = name
        parent.children[name] = node
        self._changed(parent)

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
        self._lower_children.pop(node.ino, None)

    def set_stat(self, node: Node, st: os.stat_result) -> None:
        """New attributes for ``node``'s inode, under every name it has."""
        elsewhere = self.data_elsewhere.get(node.ino)
        for alias in self.aliases(node):
            alias.set_stat(st)
            if elsewhere is not None:
                alias.blocks = elsewhere.blocks  # the kernel shows the data's


def _stat_of(node: Node) -> os.stat_result:
    """A stat result with a node's attributes (to copy them to a new alias)."""
    fields = [node.mode, node.ino, 0, node.nlink, node.uid, node.gid, node.size,
              node.atime_ns // 10**9, node.mtime_ns // 10**9, node.ctime_ns // 10**9]
    return os.stat_result(fields, {
        "st_atime_ns": node.atime_ns, "st_mtime_ns": node.mtime_ns,
        "st_ctime_ns": node.ctime_ns, "st_blocks": node.blocks, "st_rdev": node.rdev,
    })
