"""The file tree pane: the rows of a :class:`~layerfs.browse.model.TreeRows`, drawn one
line at a time (textual's line API), so only the lines on screen are ever rendered.

Columns as dive's: the mark (A/M/D/O, coloured, · for a directory changed below),
the mode, the owner, the size, then the name indented by depth. A removed entry
shows what removed it (a whiteout or an opaque directory).
"""

from __future__ import annotations

import stat

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..explore.diff import ADDED, MODIFIED, OPAQUE, REMOVED
from ..sizes import format_size
from .model import Row, TreeRows

MARK_STYLES = {ADDED: Style(color="green", bold=True), MODIFIED: Style(color="yellow", bold=True),
               REMOVED: Style(color="red", bold=True), OPAQUE: Style(color="magenta", bold=True)}
_DIM = Style(dim=True)
_DIR = Style(color="blue", bold=True)
_CURSOR = Style(reverse=True)
_CURSOR_UNFOCUSED = Style(underline=True)


def row_text(row: Row) -> list[tuple[str, Style | None]]:
    """The pieces of one line: (text, style)."""
    style = MARK_STYLES.get(row.change.kind) if row.change is not None else None
    mark = row.mark or " "
    node = row.node
    if node is None:  # removed by the view
        assert row.change is not None
        mode, owner = "-" * 10, ""
        size = format_size(row.change.size)
    else:
        mode = stat.filemode(node.mode)
        owner = f"{node.uid}:{node.gid}"
        size = format_size(node.size) if not row.is_dir else ""
    pieces: list[tuple[str, Style | None]] = [
        (f"{mark} ", style or _DIM), (f"{mode} {owner:>9} {size:>7}  ", _DIM if node is None else None),
        ("  " * row.depth, None),
    ]
    if row.is_dir:
        pieces.append(("▾ " if row.expanded else "▸ ", _DIM))
    else:
        pieces.append(("  ", None))
    name = row.name.decode("utf-8", "backslashreplace")
    name = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)
    pieces.append((name + ("/" if row.is_dir else ""),
                   style or (_DIR if row.is_dir else None)))
    if row.change is not None and row.change.kind == REMOVED:
        what = f"{row.change.type}, {row.change.entries} entries" if row.change.type == "dir" \
            else row.change.type
        pieces.append((f"  removed ({what}) by {row.change.via or 'a lower change'}", _DIM))
    elif row.change is not None and row.change.kind == OPAQUE:
        pieces.append(("  opaque: hides the layers below", _DIM))
    return pieces


class FileTree(ScrollView, can_focus=True):
    """The merged tree as of the selected layer, with a cursor."""

    DEFAULT_CSS = """
    FileTree { overflow-x: hidden; }
    """

    BINDINGS = [
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False),
        Binding("end", "edge(1)", show=False),
        Binding("space", "toggle", "collapse"),
        Binding("enter,right", "expand", "expand", show=False),
        Binding("left", "collapse", "parent", show=False),
        Binding("ctrl+space", "collapse_all", "collapse all", show=False),
    ]

    class Moved(Message):
        """The cursor is on another row (or the rows changed)."""

        def __init__(self, row: Row | None) -> None:
            self.row = row
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model: TreeRows | None = None
        self.cursor = 0

    # -- content --------------------------------------------------------------------

    def show(self, model: TreeRows, path: bytes | None = None) -> None:
        """Show ``model``, the cursor on ``path`` if it is there (else where it was)."""
        self.model = model
        number = model.find(path) if path else None
        self._changed(number if number is not None else self.cursor)

    def refresh_rows(self, path: bytes | None = None) -> None:
        """The model's rows changed: redraw, keeping the cursor on ``path`` if shown."""
        if self.model is not None:
            self.show(self.model, path)

    @property
    def current(self) -> Row | None:
        if self.model is None or not self.model.rows:
            return None
        return self.model.rows[self.cursor]

    def _changed(self, cursor: int) -> None:
        count = len(self.model.rows) if self.model is not None else 0
        self.virtual_size = Size(self.size.width, count)
        self._set_cursor(cursor, force=True)
        self.refresh()

    def _set_cursor(self, number: int, force: bool = False) -> None:
        count = len(self.model.rows) if self.model is not None else 0
        number = max(0, min(number, count - 1))
        if number == self.cursor and not force:
            return
        self.cursor = number
        height = max(1, self.scrollable_content_region.height)
        top = int(self.scroll_offset.y)
        if number < top:
            self.scroll_to(y=number, animate=False, immediate=True)
        elif number >= top + height:
            self.scroll_to(y=number - height + 1, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.Moved(self.current))

    # -- drawing ----------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        number = int(self.scroll_offset.y) + y
        base = self.rich_style
        if self.model is None or number >= len(self.model.rows):
            return Strip.blank(width, base)
        segments = [Segment(text, base + style if style else base)
                    for text, style in row_text(self.model.rows[number])]
        strip = Strip(segments).crop_extend(0, width, base)
        if number == self.cursor:
            strip = strip.apply_style(_CURSOR if self.has_focus else _CURSOR_UNFOCUSED)
        return strip

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        if self.model is not None:
            self.virtual_size = Size(self.size.width, len(self.model.rows))

    # -- keys and mouse -------------------------------------------------------------------

    def action_move(self, step: int) -> None:
        self._set_cursor(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_edge(self, end: int) -> None:
        self._set_cursor(len(self.model.rows) - 1 if end and self.model else 0)

    def action_toggle(self) -> None:
        if self.model is None or not self.model.rows:
            return
        row = self.model.rows[self.cursor]
        if not row.is_dir:  # Space on a file folds its directory, as in dive
            parent = self.model.parent_of(self.cursor)
            if parent is None:
                return
            self.model.collapse(parent)
            self._changed(parent)
            return
        self.model.toggle(self.cursor)
        self._changed(self.cursor)

    def action_expand(self) -> None:
        if self.model is not None and self.model.rows:
            self.model.expand(self.cursor)
            self._changed(self.cursor)

    def action_collapse(self) -> None:
        if self.model is None or not self.model.rows:
            return
        row = self.model.rows[self.cursor]
        if row.expanded:
            self.model.collapse(self.cursor)
            self._changed(self.cursor)
        else:
            parent = self.model.parent_of(self.cursor)
            if parent is not None:
                self._set_cursor(parent)

    def action_collapse_all(self) -> None:
        if self.model is not None:
            self.model.collapse_all()
            self._changed(0)

    def on_click(self, event: events.Click) -> None:
        if self.model is None:
            return
        offset = event.get_content_offset(self)
        if offset is None:  # on the border or a scrollbar
            return
        number = int(self.scroll_offset.y) + offset.y
        if number >= len(self.model.rows):
            return
        if number == self.cursor or event.chain > 1:
            self.cursor = number
            self.action_toggle()
        else:
            self._set_cursor(number)
