"""What the browser shows, without any UI: the layer rows, the tree as of a layer with
its A/M/D/O marks, the views, the filter and the facts about one entry.

Everything is computed by the explore tools on the mount's own index:
:class:`~layerfs.explore.diff.TreeDiff` gives the marks (so the tree says what
``layerfs diff`` says), :class:`~layerfs.explore.provenance.Explainer` the versions
of an entry (what ``layerfs which`` says), :mod:`~layerfs.explore.usage` the
efficiency. Trees are :class:`~layerfs.index.PathIndex` objects, which read a
directory when it is first listed: the rows below a collapsed directory are never
asked for, so opening costs the root listing whatever the image's size.

Views (:class:`View`): an image as of one of its layers, marked by what that layer
changed (``layer``) or by what every layer above the bottom one changed up to it
(``aggregated``, the bottom layer's tree against this one: ``diff IMAGE 1 N``); with
two images, also the second image marked by what differs from the first
(``diff A B``).
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..backing import open_for_reading
from ..explore.diff import ADDED, MODIFIED, OPAQUE, REMOVED, Change, Summary, TreeDiff
from ..explore.provenance import Explainer, Provenance
from ..images import Image
from ..index import Node, PathIndex
from ..unpack.digests import short
from ..unpack.survey import survey_dir

LETTERS = {ADDED: "A", MODIFIED: "M", REMOVED: "D", OPAQUE: "O"}
INSIDE = "·"
"""The mark of a directory holding changes further down."""

COMPARE = -1
"""The position of the view comparing two images."""


# -- layers -------------------------------------------------------------------------

@dataclass
class LayerRow:
    """One row of the layers pane (the figures ``layerfs inspect`` shows)."""

    side: int
    """Which image: 0, or 1 for the second of ``browse A B``."""
    position: int
    """0-based, bottom first; :data:`COMPARE` for the row comparing two images."""
    diff_id: str = ""
    created_by: str = ""
    size: int | None = None
    """Uncompressed bytes (None until surveyed)."""
    entries: int | None = None

    @property
    def index(self) -> str:
        return "A→B" if self.position == COMPARE else str(self.position + 1)

    @property
    def short_id(self) -> str:
        return short(self.diff_id)


def layer_rows(image: Image, side: int = 0) -> list[LayerRow]:
    """The layers bottom first, with the figures already known (no layer is read)."""
    rows = []
    for position, layer in enumerate(image.layers):
        rows.append(LayerRow(side, position, layer.diff_id, layer.created_by,
                             layer.facts.diff_size, layer.facts.entries))
    return rows


def apply_survey(row: LayerRow, info: dict) -> None:
    """Fill in a layer's size and entries from :func:`~layerfs.unpack.survey.survey_dir`,
    as ``inspect`` does for a layer the cache has no record of."""
    row.entries = info["entries"]
    if row.size is None:
        row.size = info["file_bytes"]


def survey(image: Image, rows: list[LayerRow]) -> None:
    """Walk the layers the cache did not record (slow: the browser does it elsewhere)."""
    for row in rows:
        if row.entries is None and row.position != COMPARE:
            apply_survey(row, survey_dir(image.layers[row.position].root))


# -- the trees of an image ------------------------------------------------------------

class Stacks:
    """An image's merged trees as of each of its layers, each made when first asked for
    (a tree reads its root then; the rest as it is listed)."""

    def __init__(self, image: Image, name: str) -> None:
        self.image = image
        self.name = name
        self._trees: dict[int, PathIndex] = {}
        self._lock = threading.Lock()

    @property
    def top(self) -> int:
        return len(self.image.layers) - 1

    def as_of(self, position: int) -> PathIndex:
        with self._lock:
            tree = self._trees.get(position)
            if tree is None:
                tree = self._trees[position] = PathIndex(self.image.layers[:position + 1])
            return tree


@dataclass(frozen=True)
class View:
    """What the tree pane shows: an image as of a layer, and what the marks compare."""

    side: int
    position: int
    aggregated: bool = False


def tree_of(sides: list[Stacks], view: View) -> PathIndex:
    if view.position == COMPARE:
        return sides[1].as_of(sides[1].top)
    return sides[view.side].as_of(view.position)


def changes_of(sides: list[Stacks], view: View) -> Iterator[Change]:
    """The changes the view marks: what ``layerfs diff`` prints for it."""
    if view.position == COMPARE:
        a, b = sides
        return TreeDiff(a.as_of(a.top), b.as_of(b.top)).changes()
    stacks = sides[view.side]
    if view.position == 0:
        before = None
    else:
        before = stacks.as_of(0 if view.aggregated else view.position - 1)
    return TreeDiff(before, stacks.as_of(view.position)).changes()


# -- marks ---------------------------------------------------------------------------

def _parent(path: bytes) -> bytes:
    return path.rpartition(b"/")[0]


def _ancestors(path: bytes) -> Iterator[bytes]:
    while path:
        path = _parent(path)
        yield path


class Marks:
    """The changes of a view, by path: what to mark on the entries of the tree, and the
    removed entries (no longer in the tree) to show in their directories."""

    def __init__(self, changes: Iterable[Change] = ()) -> None:
        self.changed: dict[bytes, Change] = {}
        """Entries of the tree that were added, modified or made opaque."""
        self.removed: dict[bytes, dict[bytes, Change]] = {}
        """Directory path -> name -> the removal of an entry it no longer has."""
        self.inside: set[bytes] = set()
        """Directories with a change somewhere below them."""
        self.summary = Summary()
        for change in changes:
            self.add(change)

    def add(self, change: Change) -> None:
        self.summary.count(change)
        if change.kind == REMOVED:
            parent, _, name = change.path.rpartition(b"/")
            self.removed.setdefault(parent, {})[name] = change
        else:
            self.changed[change.path] = change
        for ancestor in _ancestors(change.path):
            if ancestor in self.inside:
                break
            self.inside.add(ancestor)

    def __len__(self) -> int:
        return len(self.changed) + sum(len(names) for names in self.removed.values())

    def letter(self, path: bytes) -> str:
        change = self.changed.get(path)
        return LETTERS[change.kind] if change is not None else ""


# -- the rows of the tree ----------------------------------------------------------------

@dataclass
class Row:
    """One line of the tree pane: an entry of the tree, or one the view removed."""

    path: bytes
    depth: int
    node: Node | None
    """None for a removed entry (a whiteout or an opaque dir took it away)."""
    change: Change | None = None
    changes_inside: bool = False
    expanded: bool = False

    @property
    def name(self) -> bytes:
        return self.path.rpartition(b"/")[2]

    @property
    def is_dir(self) -> bool:
        return self.node is not None and self.node.is_dir

    @property
    def mark(self) -> str:
        """A, M, D or O for the view's change; · for a directory changed below."""
        if self.change is not None:
            return LETTERS[self.change.kind]
        return INSIDE if self.changes_inside else ""


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


class TreeRows:
    """The visible rows of one tree: its expanded directories, less what the filter or
    the "only changes" switch leaves out. Expanding or collapsing splices the rows of
    one directory in or out, so a huge tree costs only what is shown."""

    def __init__(self, tree: PathIndex, marks: Marks | None = None, *,
                 expanded: set[bytes] | None = None) -> None:
        self.tree = tree
        self.marks = marks or Marks()
        self.expanded: set[bytes] = expanded if expanded is not None else set()
        """Paths of expanded directories (kept across views, as dive keeps them)."""
        self.only_changes = False
        self.filter = ""
        self.keep: set[bytes] | None = None
        """With a filter: the matching paths and their ancestors."""
        self.matched: set[bytes] = set()
        self.rows: list[Row] = []
        self.rebuild()

    # -- building -----------------------------------------------------------------

    def rebuild(self) -> None:
        self.rows = list(self._walk(b"", self.tree.root, 0, False))

    def _children(self, path: bytes, node: Node | None, under_match: bool) -> list[Row]:
        rows = []
        gone = self.marks.removed.get(path, {})
        names = node.listing() if node is not None and node.children is not None else []
        children = node.children if node is not None and node.children is not None else {}
        for name in sorted(set(names) | set(gone)) if gone else names:
            child_path = _join(path, name)
            child = children.get(name)
            change = self.marks.changed.get(child_path) if child is not None else gone[name]
            row = Row(child_path, 0, child, change, child_path in self.marks.inside)
            if self._shown(row, under_match):
                rows.append(row)
        return rows

    def _shown(self, row: Row, under_match: bool) -> bool:
        if self.only_changes and row.change is None and not row.changes_inside:
            return False
        if self.keep is not None and not under_match and row.path not in self.keep:
            return False
        return True

    def _walk(self, path: bytes, node: Node | None, depth: int,
              under_match: bool) -> Iterator[Row]:
        for row in self._children(path, node, under_match):
            row.depth = depth
            yield row
            if row.is_dir and row.path in self.expanded:
                row.expanded = True
                yield from self._walk(row.path, row.node, depth + 1,
                                      under_match or row.path in self.matched)

    # -- changing what is shown -------------------------------------------------------

    def set_marks(self, marks: Marks) -> None:
        self.marks = marks
        self.rebuild()

    def set_only_changes(self, only: bool) -> None:
        self.only_changes = only
        self.rebuild()

    def set_filter(self, text: str, found: tuple[set[bytes], set[bytes]] | None) -> None:
        """Show only what :func:`find` found for ``text`` (None: everything)."""
        self.filter = text
        if found is None:
            self.keep, self.matched = None, set()
        else:
            self.matched, self.keep = found
            if len(self.matched) <= 500:  # few enough to show them all at once
                for path in self.matched:
                    self.expanded.update(a for a in _ancestors(path) if a)
        self.rebuild()

    def toggle(self, number: int) -> None:
        row = self.rows[number]
        if row.expanded:
            self.collapse(number)
        else:
            self.expand(number)

    def expand(self, number: int) -> None:
        row = self.rows[number]
        if not row.is_dir or row.expanded:
            return
        self.expanded.add(row.path)
        row.expanded = True
        under = self._under_match(row.path)
        self.rows[number + 1:number + 1] = list(self._walk(row.path, row.node, row.depth + 1,
                                                           under))

    def collapse(self, number: int) -> None:
        row = self.rows[number]
        if not row.expanded:
            return
        self.expanded.discard(row.path)
        row.expanded = False
        end = number + 1
        while end < len(self.rows) and self.rows[end].depth > row.depth:
            end += 1
        del self.rows[number + 1:end]

    def collapse_all(self) -> None:
        self.expanded.clear()
        self.rebuild()

    def _under_match(self, path: bytes) -> bool:
        return bool(self.matched) and (path in self.matched
                                       or any(a in self.matched for a in _ancestors(path)))

    def parent_of(self, number: int) -> int | None:
        depth = self.rows[number].depth
        for candidate in range(number - 1, -1, -1):
            if self.rows[candidate].depth < depth:
                return candidate
        return None

    def find(self, path: bytes) -> int | None:
        """The row of ``path``, expanding its ancestors; None if it is not shown."""
        parts = path.split(b"/")
        start = 0
        for depth in range(1, len(parts) + 1):
            wanted = b"/".join(parts[:depth])
            number = next((n for n in range(start, len(self.rows))
                           if self.rows[n].path == wanted), None)
            if number is None:
                return None
            if depth < len(parts):
                self.expand(number)
            start = number + 1
            if depth == len(parts):
                return number
        return None


def find(tree: PathIndex, marks: Marks, text: str) -> tuple[set[bytes], set[bytes]]:
    """The paths whose name holds ``text`` (case-insensitive), removed ones included,
    and those paths with their ancestors. Reads the whole tree: slow on a big image."""
    wanted = os.fsencode(text.lower())
    matched: set[bytes] = set()
    for path, _node in tree.walk():
        if path and wanted in path.rpartition(b"/")[2].lower():
            matched.add(path)
    for parent, names in marks.removed.items():
        for name in names:
            if wanted in name.lower():
                matched.add(_join(parent, name))
    keep = set(matched)
    for path in matched:
        for ancestor in _ancestors(path):
            if ancestor in keep:
                break
            keep.add(ancestor)
    return matched, keep


# -- one entry -------------------------------------------------------------------------

PREVIEW_BYTES = 4096
PREVIEW_LINES = 40


@dataclass
class Facts:
    """What the detail pane shows for the entry under the cursor."""

    row: Row
    provenance: Provenance
    """Every version of the path in the tree's layers, with what hides each one."""
    target: str | None = None
    """A symlink's target."""
    preview: list[str] = field(default_factory=list)
    """A file's first lines, or a hex view of its first bytes."""
    binary: bool = False


def facts(tree: PathIndex, row: Row) -> Facts:
    """The facts for ``row`` (reads the layers: a few listings, a file's first bytes)."""
    result = Facts(row, Explainer(tree).explain(row.path))
    node = row.node
    if node is None:
        return result
    if stat.S_ISLNK(node.mode):
        result.target = tree.read_link(node).decode("utf-8", "backslashreplace")
    elif stat.S_ISREG(node.mode) and node.size:
        data = head(tree, node)
        result.preview, result.binary = preview_lines(data)
    return result


def head(tree: PathIndex, node: Node, size: int = PREVIEW_BYTES) -> bytes:
    """The first bytes of a file of the tree, read beneath its layer's root."""
    position, relpath = tree.data_backing(node)
    layer = tree.layers[position]
    layer.ensure_content(relpath)
    root = os.open(layer.root_bytes, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_for_reading(root, relpath)
    finally:
        os.close(root)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def preview_lines(data: bytes) -> tuple[list[str], bool]:
    """Text as its first lines, anything else as ``hexdump -C`` lines; whether binary."""
    try:
        text = data.decode("utf-8")
        binary = "\0" in text
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        binary = exc.start < len(data) - 4
        text = data[:exc.start].decode("utf-8") if not binary else ""
    if not binary:
        lines = text.splitlines()[:PREVIEW_LINES]
        return [line.expandtabs(4) for line in lines], False
    lines = []
    for offset in range(0, min(len(data), 16 * PREVIEW_LINES), 16):
        chunk = data[offset:offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  |{text}|")
    return lines, True
