"""``layerfs diff``: what a layer changed relative to everything below it, what changed
between two layers of an image, or between two images.

Both sides are merged trees (:class:`~layerfs.index.PathIndex`): the stack up to
the layer below and up to the layer, the stacks at two layers, or two images.
They are walked side by side in path order and each change is yielded as it is
found. A directory whose contributing layers are the same on both sides (same
layer directories, e.g. a shared base unpacked once in the cache) is the same
subtree and is skipped unread, so diffing one layer costs the size of that layer,
not of the image.

Changes: ``added``; ``modified`` (type, content hashed with xxhash when the sizes
agree, size, mode, uid, gid, rdev, symlink target, xattrs; mtime with
``--mtime``); ``removed`` (a whole subtree in one change, with its entry count and
bytes; ``via`` says whether a whiteout or an opaque directory removed it);
``opaque`` (a directory that a layer made opaque, replacing the lower contents).

JSON schema (``--json``)::

    {"image": str,                     # the image (image A for two images)
     "diffs": [{
        "from": SIDE | null,           # null: the empty tree (diff of the bottom layer)
        "to": SIDE,
        "changes": [CHANGE, ...],      # path order
        "summary": {"added": int, "modified": int, "removed": int, "opaque": int,
                    "added_bytes": int, "removed_bytes": int, "modified_bytes": int}}]}
    SIDE = {"image": str, "layer": LAYER | null}   # layer: the top layer of that side
    LAYER = {"index": int, "label": str, "diff_id": str, "chain_id": str, "created_by": str}
    CHANGE = {"kind": "added|modified|removed|opaque", "path": "/etc/hosts",
              "type": "file|dir|symlink|char|block|fifo|socket",
              "size": int,                 # file bytes (removed: of the whole subtree)
              "entries": int,              # removed: entries in the subtree, else 1
              "via": "whiteout|opaque" | null,
              "changed": [str, ...],       # modified/opaque: properties that differ
              "before": {PROPERTY: value}, "after": {PROPERTY: value}}
    PROPERTY values: type str, mode "0644", uid/gid/size/rdev/mtime_ns int,
    target str, content xxh3-128 hex, xattrs {name: value (utf-8, backslash-escaped)}
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Iterator, TextIO

from ..index import Node, PathIndex
from ..sizes import format_size, plural
from ..treediff import content_hash
from .provenance import type_name
from .render import Painter, json_path, shown_path

ADDED, MODIFIED, REMOVED, OPAQUE = "added", "modified", "removed", "opaque"
PROPERTIES = ("type", "content", "size", "mode", "uid", "gid", "rdev", "target", "xattrs")


@dataclass
class Change:
    kind: str
    path: bytes
    type: str
    size: int = 0
    entries: int = 1
    via: str | None = None
    changed: list[str] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    replaced_bytes: int = 0
    """File bytes of a directory subtree replaced by a non-directory (counted as removed)."""


@dataclass
class Summary:
    added: int = 0
    modified: int = 0
    removed: int = 0
    opaque: int = 0
    added_bytes: int = 0
    removed_bytes: int = 0
    modified_bytes: int = 0

    def count(self, change: Change) -> None:
        setattr(self, change.kind, getattr(self, change.kind) + 1)
        if change.kind == ADDED:
            self.added_bytes += change.size
        elif change.kind == REMOVED:
            self.removed_bytes += change.size
        elif change.kind == MODIFIED:
            self.modified_bytes += change.size
            self.removed_bytes += change.replaced_bytes


def _file_bytes(node: Node) -> int:
    return node.size if stat.S_ISREG(node.mode) else 0


class TreeDiff:
    """The changes that turn merged tree ``before`` (None: empty) into ``after``."""

    def __init__(self, before: PathIndex | None, after: PathIndex, *,
                 mtime: bool = False) -> None:
        self.before = before
        self.after = after
        self.properties = PROPERTIES + (("mtime_ns",) if mtime else ())

    # -- identity: the same backing entries need no comparison ------------------

    @staticmethod
    def _key(index: PathIndex, node: Node) -> tuple:
        roots = tuple(index.layers[p].root for p in node.layers) if node.is_dir else ()
        return (index.layers[node.layer].root, roots)

    def _same(self, a: Node, b: Node) -> bool:
        assert self.before is not None
        return self._key(self.before, a) == self._key(self.after, b)

    # -- properties ----------------------------------------------------------------

    def _value(self, index: PathIndex, node: Node, name: str) -> object:
        if name == "type":
            return type_name(node.mode)
        if name == "mode":
            return f"{stat.S_IMODE(node.mode):04o}"
        if name == "size":
            return node.size if stat.S_ISREG(node.mode) else None
        if name == "rdev":
            return node.rdev if stat.S_ISCHR(node.mode) or stat.S_ISBLK(node.mode) else None
        if name == "target":
            if not stat.S_ISLNK(node.mode):
                return None
            layer, relpath = index.backing(node)
            return os.readlink(layer.path_of(relpath)).decode("utf-8", "backslashreplace")
        if name == "xattrs":
            return {n.decode("utf-8", "backslashreplace"):
                    index.get_xattr(node, n).decode("utf-8", "backslashreplace")
                    for n in sorted(index.list_xattrs(node))}
        if name == "content":
            if not stat.S_ISREG(node.mode):
                return None
            layer, relpath = index.backing(node)
            return content_hash(layer.path_of(relpath))
        return getattr(node, name)

    def _compare(self, path: bytes, a: Node, b: Node) -> Change | None:
        assert self.before is not None
        change = Change(MODIFIED, path, type_name(b.mode), size=_file_bytes(b))
        for name in self.properties:
            if name == "content":
                continue
            va, vb = self._value(self.before, a, name), self._value(self.after, b, name)
            if va != vb:
                change.changed.append(name)
                change.before[name], change.after[name] = va, vb
        if stat.S_ISREG(a.mode) and stat.S_ISREG(b.mode) and "size" not in change.changed:
            va, vb = self._value(self.before, a, "content"), self._value(self.after, b, "content")
            if va != vb:
                change.changed.insert(1, "content")
                change.before["content"], change.after["content"] = va, vb
        elif stat.S_ISREG(a.mode) and stat.S_ISREG(b.mode):
            change.changed.insert(1, "content")
        return change if change.changed else None

    # -- the walk ---------------------------------------------------------------------

    def changes(self) -> Iterator[Change]:
        if self.before is None:
            yield from self._added_subtree(b"", self.after.root, include_self=False)
            return
        root_change = self._compare(b"", self.before.root, self.after.root) \
            if not self._same(self.before.root, self.after.root) else None
        if root_change is not None:
            yield root_change
        yield from self._directory(b"", self.before.root, self.after.root)

    def _directory(self, path: bytes, a: Node, b: Node) -> Iterator[Change]:
        assert self.before is not None and a.children is not None and b.children is not None
        if self._same(a, b):
            return
        gone = [name for name in a.children if name not in b.children]
        causes = self._removal_causes(path, b, gone) if gone else {}
        for name in sorted(a.children.keys() | b.children.keys()):
            child_path = path + b"/" + name if path else name
            ca, cb = a.children.get(name), b.children.get(name)
            if cb is None:
                assert ca is not None
                size, entries = self._subtree_totals(ca)
                yield Change(REMOVED, child_path, type_name(ca.mode), size=size, entries=entries,
                             via=causes.get(name))
                continue
            if ca is None:
                yield from self._added_subtree(child_path, cb, include_self=True)
                continue
            if self._same(ca, cb):
                continue
            change = self._compare(child_path, ca, cb)
            if cb.is_dir and ca.is_dir and self._made_opaque(child_path, ca, cb):
                change = change or Change(OPAQUE, child_path, "dir")
                change.kind = OPAQUE
            if change is not None:
                if ca.is_dir and not cb.is_dir:
                    size, entries = self._subtree_totals(ca)
                    change.replaced_bytes = size
                yield change
            if ca.is_dir and cb.is_dir:
                yield from self._directory(child_path, ca, cb)
            elif cb.is_dir:
                yield from self._added_subtree(child_path, cb, include_self=False)

    def _added_subtree(self, path: bytes, node: Node, *, include_self: bool) -> Iterator[Change]:
        if include_self:
            yield Change(ADDED, path, type_name(node.mode), size=_file_bytes(node))
        if node.children is None:
            return
        for name in node.listing():
            child = node.children[name]
            yield from self._added_subtree(path + b"/" + name if path else name, child,
                                           include_self=True)

    @staticmethod
    def _subtree_totals(node: Node) -> tuple[int, int]:
        size, entries = 0, 0
        stack = [node]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            entries += 1
            if current.children is not None:
                stack.extend(current.children.values())
            elif current.ino not in seen:
                seen.add(current.ino)
                size += _file_bytes(current)
        return size, entries

    def _made_opaque(self, path: bytes, a: Node, b: Node) -> bool:
        """Whether ``b``'s directory is an opaque copy that ``a`` did not have."""
        assert self.before is not None
        bottom = b.layers[-1]
        if self.after.layers[bottom].root in {self.before.layers[p].root for p in a.layers}:
            return False
        if not any(name not in b.children for name in a.children):  # type: ignore[union-attr]
            return False
        return self.after.views[bottom].listing(path).listing.opaque

    def _removal_causes(self, path: bytes, b: Node, names: list[bytes]) -> dict[bytes, str]:
        """Why names of directory ``path`` are gone in ``after``: a whiteout or opaque copy."""
        causes: dict[bytes, str] = {}
        wanted = set(names)
        listing = None
        for position in b.layers:
            listing = self.after.views[position].listing(path).listing
            for name in wanted & set(listing.whiteouts):
                causes.setdefault(name, "whiteout")
        if listing is not None and listing.opaque:
            for name in wanted:
                causes.setdefault(name, "opaque")
        return causes


# -- output ---------------------------------------------------------------------------

_MARKS = {ADDED: ("A", "green"), MODIFIED: ("M", "yellow"), REMOVED: ("D", "red"),
          OPAQUE: ("O", "magenta")}


def change_json(change: Change) -> dict:
    return {"kind": change.kind, "path": json_path(change.path), "type": change.type,
            "size": change.size, "entries": change.entries, "via": change.via,
            "changed": change.changed, "before": change.before, "after": change.after}


def change_line(change: Change, paint: Painter) -> str:
    mark, colour = _MARKS[change.kind]
    text = f"{paint(mark, colour, 'bold')}  {shown_path(change.path)}"
    detail = change.type
    if change.kind == REMOVED:
        if change.type == "dir":
            detail += f", {plural(change.entries, 'entry')}"
        detail += f", {format_size(change.size)}"
        if change.via:
            detail += f" (by {change.via})"
    elif change.kind == ADDED:
        if change.type == "file":
            detail += f", {format_size(change.size)}"
    else:
        parts = []
        for name in change.changed:
            before, after = change.before.get(name), change.after.get(name)
            if name == "content":
                parts.append("content")
            elif name == "size":
                parts.append(f"size {format_size(before)} -> {format_size(after)}")  # type: ignore[arg-type]
            elif name == "xattrs":
                parts.append("xattrs")
            else:
                parts.append(f"{name} {before} -> {after}")
        if change.kind == OPAQUE:
            parts.insert(0, "made opaque")
        detail += ": " + ", ".join(parts)
    return f"{text}  {paint(detail, 'dim')}"


def summary_line(summary: Summary) -> str:
    return (f"{summary.added} added ({format_size(summary.added_bytes)}), "
            f"{summary.modified} modified ({format_size(summary.modified_bytes)}), "
            f"{summary.removed} removed ({format_size(summary.removed_bytes)}), "
            f"{summary.opaque} made opaque")


class DiffPrinter:
    """Prints diffs as they are computed: text lines, or one JSON document written
    piece by piece (so nothing but the two indexes is held in memory)."""

    def __init__(self, out: TextIO, image_name: str, *, as_json: bool, paint: Painter) -> None:
        self.out = out
        self.as_json = as_json
        self.paint = paint
        self.count = 0
        self.changes = 0
        """Changes printed so far (``--exit-code``)."""
        if as_json:
            out.write('{"image": ' + json.dumps(image_name) + ', "diffs": [')

    def diff(self, title: str, side_from: dict | None, side_to: dict,
             changes: Iterator[Change]) -> Summary:
        summary = Summary()
        if self.as_json:
            self.out.write(("," if self.count else "") + '\n {"from": ' + json.dumps(side_from)
                           + ', "to": ' + json.dumps(side_to) + ', "changes": [')
        else:
            if self.count:
                self.out.write("\n")
            self.out.write(self.paint(title, "bold") + "\n")
        first = True
        for change in changes:
            summary.count(change)
            self.changes += 1
            if self.as_json:
                self.out.write(("" if first else ",") + "\n  " + json.dumps(change_json(change)))
            else:
                self.out.write(change_line(change, self.paint) + "\n")
            first = False
        if self.as_json:
            self.out.write('],\n  "summary": ' + json.dumps(vars(summary)) + "}")
        else:
            self.out.write(self.paint(summary_line(summary), "bold") + "\n")
        self.count += 1
        return summary

    def close(self) -> None:
        if self.as_json:
            self.out.write("\n]}\n")
        self.out.flush()
