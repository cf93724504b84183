"""The in-memory path index of a merged layer stack.

Built once at mount time by walking the layers top-down with the merge rule
(:mod:`layerfs.merge`): a subtree hidden by a whiteout, an opaque directory or
a shadowing file is never read. Afterwards lookups, attributes and listings
are answered from memory, O(1) in the number of layers.

A :class:`Node` holds the attributes of the entry that won (the top-most
layer's), the layer position that provides it, and for a directory the layer
positions whose copies merge into it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Iterator, Sequence

from .errors import LayerError
from .inodes import ROOT_INODE, InodeNumbers
from .layer import Layer
from .merge import merge_children
from .metadata import parse_override_stat
from .scan import ScannedDir, read_xattrs, scan_dir
from .sidecar import Sidecar, sidecar_of
from .whiteouts import OVERRIDE_STAT_XATTR, backing_xattr_name, visible_xattr_name


class Node:
    """One visible entry of the merged tree."""

    __slots__ = (
        "ino", "name", "parent", "layer", "layers", "children", "sorted_names",
        "mode", "uid", "gid", "size", "blocks", "nlink", "rdev",
        "atime_ns", "mtime_ns", "ctime_ns",
    )

    def __init__(self, ino: int, name: bytes, parent: "Node | None", layer: int,
                 st: os.stat_result) -> None:
        self.ino = ino
        self.name = name
        self.parent = parent
        self.layer = layer
        self.layers: tuple[int, ...] = (layer,)
        self.children: dict[bytes, Node] | None = {} if stat.S_ISDIR(st.st_mode) else None
        self.sorted_names: list[bytes] | None = None
        self.set_stat(st)

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
        return self.children is not None

    @property
    def is_merged_dir(self) -> bool:
        """A directory that more than one layer contributes to (overlay's "merge dir")."""
        return self.children is not None and len(self.layers) > 1

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
        self._overrides = [self._layer_uses_override_stat(layer) for layer in self.layers]
        self._sidecars: list[Sidecar | None] = [self._load_sidecar(layer) for layer in self.layers]
        self.root = self._build()

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

    def backing(self, node: Node) -> tuple[Layer, bytes]:
        """The layer providing ``node`` and the path of its data inside that layer."""
        return self.layers[node.layer], node.path()

    def list_xattrs(self, node: Node) -> list[bytes]:
        """The xattr names ``node`` shows: its backing entry's, less overlay-private ones."""
        layer, relpath = self.backing(node)
        names = [visible_xattr_name(os.fsencode(name))
                 for name in os.listxattr(layer.path_of(relpath), follow_symlinks=False)]
        shown = [name for name in names if name is not None]
        sidecar = self._sidecars[node.layer]
        if sidecar is not None:
            shown += [name for name in sidecar.xattrs_of(relpath) if name not in shown]
        return shown

    def get_xattr(self, node: Node, name: bytes) -> bytes:
        """The value of xattr ``name`` of ``node``; OSError(ENODATA) if it has none."""
        layer, relpath = self.backing(node)
        sidecar = self._sidecars[node.layer]
        if sidecar is not None and name in sidecar.xattrs_of(relpath):
            return sidecar.xattrs_of(relpath)[name]
        backing_name = backing_xattr_name(name)
        if backing_name is None:
            raise OSError(errno.ENODATA, "no such attribute")
        return os.getxattr(layer.path_of(relpath), backing_name, follow_symlinks=False)

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

    @staticmethod
    def _layer_uses_override_stat(layer: Layer) -> bool:
        # containers-storage with force_mask marks every entry, the root included.
        try:
            return OVERRIDE_STAT_XATTR in read_xattrs(layer.root_bytes, frozenset({OVERRIDE_STAT_XATTR}))
        except OSError:
            return False

    @staticmethod
    def _load_sidecar(layer: Layer) -> Sidecar | None:
        try:
            return sidecar_of(layer)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LayerError(f"{layer.extra.get('sidecar')}: unreadable metadata of layer "
                             f"{layer.describe()}: {exc}") from exc

    def _is_implied(self, position: int, relpath: bytes) -> bool:
        sidecar = self._sidecars[position]
        return sidecar is not None and sidecar.is_implied(relpath)

    def _stat_entry(self, position: int, relpath: bytes, entry: os.DirEntry) -> os.stat_result:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise LayerError.from_os_error(self.layers[position], relpath, exc) from exc
        return self._shown_stat(position, relpath, st)

    def _shown_stat(self, position: int, relpath: bytes, st: os.stat_result) -> os.stat_result:
        """What an entry shows: its stat on disk, corrected by the layer's recorded metadata."""
        if self._overrides[position]:
            st = self._apply_override(self.layers[position].path_of(relpath), st)
        sidecar = self._sidecars[position]
        if sidecar is not None:
            st = sidecar.stat_for(relpath, st)
        return st

    def _metadata_layer(self, dir_layers: Sequence[int], relpath: bytes) -> int:
        """The layer whose copy of a directory gives its metadata: the top-most one that
        really holds it, skipping copies an unpacker only implied as parents
        (FORMATS.md 8.5: inherit from below, as containerd and the OCI spec do)."""
        for position in dir_layers:
            if not self._is_implied(position, relpath):
                return position
        return dir_layers[0]

    @staticmethod
    def _apply_override(path: bytes, st: os.stat_result) -> os.stat_result:
        values = read_xattrs(path, frozenset({OVERRIDE_STAT_XATTR}))
        override = parse_override_stat(values.get(OVERRIDE_STAT_XATTR, b""))
        if override is None:
            return st
        mode, rdev = override.apply(st.st_mode, st.st_rdev)
        fields = list(st)
        fields[stat.ST_MODE] = mode
        fields[stat.ST_UID] = override.uid
        fields[stat.ST_GID] = override.gid
        result = os.stat_result(fields, {
            "st_atime_ns": st.st_atime_ns, "st_mtime_ns": st.st_mtime_ns,
            "st_ctime_ns": st.st_ctime_ns, "st_blocks": st.st_blocks,
            "st_blksize": st.st_blksize, "st_rdev": rdev,
        })
        return result

    def _root_stat(self, position: int) -> os.stat_result:
        layer = self.layers[position]
        try:
            st = os.lstat(layer.root_bytes)
        except OSError as exc:
            raise LayerError.from_os_error(layer, b"", exc) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{layer.root}: layer {layer.describe()} is not a directory")
        return self._shown_stat(position, b"", st)

    def _build(self) -> Node:
        top = len(self.layers) - 1
        all_layers = tuple(range(top, -1, -1))
        root_stats = {position: self._root_stat(position) for position in all_layers}
        meta = self._metadata_layer(all_layers, b"")
        root = Node(ROOT_INODE, b"", None, meta, root_stats[meta])
        root.layers = all_layers
        self.nodes[ROOT_INODE] = root
        hard_links: dict[tuple[int, int, int], int] = {}
        pending: list[tuple[Node, bytes]] = [(root, b"")]
        while pending:
            directory, relpath = pending.pop()
            scanned = self._scan_merged_dir(directory, relpath)
            directory.layers = tuple(position for position, _ in scanned)
            merged = merge_children([(position, result.listing) for position, result in scanned])
            dirents = {position: result.dirents for position, result in scanned}
            children = directory.children
            assert children is not None
            for name in sorted(merged):
                child = merged[name]
                child_path = relpath + b"/" + name if relpath else name
                if child.is_dir:
                    meta = self._metadata_layer(child.dir_layers, child_path)
                    st = self._stat_entry(meta, child_path, dirents[meta][name])
                    node = Node(self.inodes.assign(child_path), name, directory, meta, st)
                    node.layers = child.dir_layers
                    pending.append((node, child_path))
                else:
                    st = self._stat_entry(child.layer, child_path, dirents[child.layer][name])
                    if st.st_nlink > 1:
                        # Names of one inode within a layer share one number.
                        key = (child.layer, st.st_dev, st.st_ino)
                        if key not in hard_links:
                            hard_links[key] = self.inodes.assign(child_path)
                        ino = hard_links[key]
                    else:
                        ino = self.inodes.assign(child_path)
                    node = Node(ino, name, directory, child.layer, st)
                children[name] = node
                self.nodes.setdefault(node.ino, node)
        return root

    def _scan_merged_dir(self, directory: Node, relpath: bytes) -> list[tuple[int, ScannedDir]]:
        """Scan the directory in each layer that may contribute, top first,
        stopping after the first opaque copy."""
        scanned: list[tuple[int, ScannedDir]] = []
        is_root = directory.parent is None
        for position in directory.layers:
            result = scan_dir(self.layers[position], relpath, is_root=is_root)
            sidecar = self._sidecars[position]
            if sidecar is not None:
                result.listing.whiteouts = set(result.listing.whiteouts) | sidecar.whiteouts_in(relpath)
            scanned.append((position, result))
            if result.listing.opaque:
                break
        return scanned
