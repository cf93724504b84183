"""Where a path of the merged tree comes from, layer by layer, and what hides it.

Every answer is read from the mount's :class:`~layerfs.index.PathIndex` and the
merge rule :func:`~layerfs.merge.merge_children`: to learn which layer hides a
version, the rule is asked again over fewer layers (the version's own layer and
those above it, one more at a time) until the version stops being visible; the
layer added last is the one that hides it. The rule treats every name on its
own, so each listing is cut down to the one name asked about first.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ..index import Node, PathIndex
from ..merge import DirListing, merge_children
from ..whiteouts import OPAQUE_MARKER, OPAQUE_XATTRS, WHITEOUT_PREFIX, is_whiteout_device

TYPE_NAMES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
              stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo",
              stat.S_IFSOCK: "socket"}

# What a version is in the merged tree.
PROVIDES = "provides"   # the entry shown (for a directory: its metadata)
MERGED = "merged"       # a lower copy of a directory whose names merge in
SHADOWED = "shadowed"   # hidden by another layer's entry at the same path
HIDDEN = "hidden"       # deleted by a whiteout or an opaque directory, or below a replaced dir
WHITEOUT = "whiteout"   # the layer deletes the path from the layers below


def type_name(mode: int) -> str:
    return TYPE_NAMES.get(stat.S_IFMT(mode), "?")


@dataclass
class Hider:
    """The layer entry that hides a version."""

    position: int
    how: str
    """``whiteout`` (the path or an ancestor deleted), ``opaque`` (an opaque directory),
    ``replaced`` (an ancestor replaced by a non-directory), ``shadowed`` (another entry
    at the same path)."""
    path: bytes
    """The path the hiding entry sits at (the version's path or an ancestor)."""
    marker: str
    """How the layer encodes it: ``.wh.NAME``, ``.wh..wh..opq``, ``char 0/0``, the
    opaque xattr, ``xattr whiteout``, ``recorded`` (layer metadata), or the entry's type."""


@dataclass
class Version:
    position: int
    state: str
    mode: int = 0
    size: int = 0
    uid: int = 0
    gid: int = 0
    hider: Hider | None = None

    @property
    def type(self) -> str:
        return "whiteout" if self.state == WHITEOUT else type_name(self.mode)


@dataclass
class Provenance:
    path: bytes
    node: Node | None
    """The visible entry, or None when the path is not in the merged tree."""
    versions: list[Version]
    """Every layer's entry or whiteout at the path, top layer first."""
    asked: bytes = b""
    """The path as asked, when a symlinked parent made it ``path``."""
    via: list[tuple[bytes, bytes]] = field(default_factory=list)
    """The symlinked parents followed from ``asked`` to ``path``: (link, target)."""

    @property
    def hider(self) -> Hider | None:
        """For a hidden path: what hides its top-most version."""
        if self.node is not None:
            return None
        for version in self.versions:
            if version.state != WHITEOUT:
                return version.hider
        return None


def _parent_and_name(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def _only(listing: DirListing | None, name: bytes) -> DirListing:
    if listing is None:  # the layer holds the dir elsewhere (a redirect): nothing here
        return DirListing()
    entries = {name: listing.entries[name]} if name in listing.entries else {}
    whiteouts = {name} if name in listing.whiteouts else set()
    return DirListing(entries, whiteouts, listing.opaque)


class Explainer:
    """Answers provenance questions over one index (caching directory listings)."""

    def __init__(self, index: PathIndex) -> None:
        self.index = index
        self._listings: dict[tuple[int, bytes], DirListing] = {}

    def listing(self, position: int, reldir: bytes) -> DirListing | None:
        key = (position, reldir)
        if key not in self._listings:
            view = self.index.views[position]
            if not view.has_dir(reldir):
                return None
            self._listings[key] = view.listing(reldir).listing
        return self._listings[key]

    def explain(self, path: bytes) -> Provenance:
        node = self.index.resolve(path) if path else self.index.root
        parent, name = _parent_and_name(path)
        versions: list[Version] = []
        for position in range(len(self.index.layers) - 1, -1, -1):
            if not path:
                versions.append(self._version(position, b"", node))
                continue
            listing = self.listing(position, parent)
            if listing is None:
                continue
            if name in listing.entries:
                versions.append(self._version(position, path, node))
            elif name in listing.whiteouts:
                versions.append(Version(position, WHITEOUT))
        return Provenance(path, node, versions)

    def _version(self, position: int, path: bytes, node: Node | None) -> Version:
        st = self._stat(position, path)
        version = Version(position, HIDDEN, st.st_mode, st.st_size, st.st_uid, st.st_gid)
        if node is not None and node.is_dir and position in node.layers:
            version.state = PROVIDES if position == node.layer else MERGED
        elif node is not None and not node.is_dir and node.layer == position:
            version.state = PROVIDES
        else:
            version.hider = self.hider_of(position, path)
            if version.hider is not None and version.hider.path == path \
                    and version.hider.how == "shadowed":
                version.state = SHADOWED
        return version

    def _stat(self, position: int, path: bytes) -> os.stat_result:
        return self.index.views[position].stat(path)

    def hider_of(self, position: int, path: bytes) -> Hider | None:
        """What hides layer ``position``'s entry at ``path`` (None if it is visible)."""
        parts = path.split(b"/") if path else []
        parent_node = self.index.root
        for depth in range(1, len(parts) + 1):
            reldir = b"/".join(parts[:depth - 1])
            current = b"/".join(parts[:depth])
            name = parts[depth - 1]
            last = depth == len(parts)
            assert parent_node.children is not None
            child = parent_node.children.get(name)
            if child is not None and child.is_dir and position in child.layers:
                if last:
                    return None
                parent_node = child
                continue
            if last and child is not None and not child.is_dir and child.layer == position:
                return None
            return self._first_hider(parent_node, reldir, current, name, position, child, last)
        return None

    def _first_hider(self, parent_node: Node, reldir: bytes, current: bytes, name: bytes,
                     position: int, child: Node | None, last: bool) -> Hider | None:
        if child is not None and child.is_dir and position not in child.layers:
            # Its copy merges by name but a higher copy of the directory is opaque.
            merged = merge_children([(p, _only(self.listing(p, reldir), name))
                                     for p in parent_node.layers])
            entry = merged.get(name)
            if entry is not None and position in entry.dir_layers:
                opaque_at = child.layers[-1]
                return Hider(opaque_at, "opaque", current, self._opaque_form(opaque_at, current))
        above = [p for p in parent_node.layers if p >= position]  # top first, ends with position
        listings = [(p, _only(self.listing(p, reldir), name)) for p in above]
        for start in range(len(above) - 2, -1, -1):
            entry = merge_children(listings[start:]).get(name)
            seen = entry is not None and position in (entry.dir_layers if entry.is_dir
                                                      else (entry.layer,))
            if seen:
                continue
            culprit, listing = listings[start]
            if name in listing.entries and name not in listing.whiteouts:
                kind = "dir" if listing.entries[name] else self._type_at(culprit, current)
                own_is_dir = listings[-1][1].entries.get(name, False)
                how = "shadowed" if last and not (own_is_dir and not listing.entries[name]) \
                    else "replaced"
                return Hider(culprit, how, current, kind)
            if listing.opaque and name not in listing.whiteouts:
                return Hider(culprit, "opaque", reldir, self._opaque_form(culprit, reldir))
            return Hider(culprit, "whiteout", current, self._whiteout_form(culprit, reldir, name))
        return None

    def _type_at(self, position: int, path: bytes) -> str:
        return type_name(self._stat(position, path).st_mode)

    def _whiteout_form(self, position: int, reldir: bytes, name: bytes) -> str:
        layer = self.index.layers[position]
        marker = WHITEOUT_PREFIX + name
        try:
            os.lstat(layer.path_of(reldir + b"/" + marker if reldir else marker))
            return ".wh." + name.decode("utf-8", "backslashreplace")
        except OSError:
            pass
        try:
            st = os.lstat(layer.path_of(reldir + b"/" + name if reldir else name))
        except OSError:
            return "recorded"
        return "char 0/0" if is_whiteout_device(st.st_mode, st.st_rdev) else "xattr whiteout"

    def _opaque_form(self, position: int, reldir: bytes) -> str:
        layer = self.index.layers[position]
        if os.path.lexists(layer.path_of(reldir + b"/" + OPAQUE_MARKER if reldir
                                         else OPAQUE_MARKER)):
            return OPAQUE_MARKER.decode()
        path = layer.path_of(reldir)
        for name in OPAQUE_XATTRS:
            try:
                os.getxattr(path, name, follow_symlinks=False)
                return name.decode() + "=y"
            except OSError:
                continue
        return "opaque"
