"""``layerfs browse``: the textual application and its layout.

Left, the layers bottom to top and the detail pane of the entry under the cursor;
right, the tree as of the selected layer; below, the status line (efficiency and
wasted bytes, the view, the change counts, the filter) and the keys. Everything
slow (the changes of a view, the layers' figures, the usage figures, a filter over
the whole tree, the facts of an entry) runs in a worker thread and lands when done,
so the UI answers at once; the model (:mod:`layerfs.browse.model`) does the work.
"""

from __future__ import annotations

import asyncio

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from ..errors import LayerfsError
from ..explore import usage
from ..explore.diff import summary_line
from ..explore.layers import layer_name
from ..explore.provenance import WHITEOUT, type_name
from ..explore.render import mode_text, one_line, shown_path
from ..explore.which import describe_hider
from ..sizes import format_size
from . import model
from .background import Background
from .model import COMPARE, Facts, LayerRow, Marks, Stacks, TreeRows, View
from .tree import MARK_STYLES, FileTree

DEBOUNCE = 0.12
"""Seconds a selection, a cursor or a filter must rest before its slow question is asked."""

_STATE_STYLES = {"provides": "green", "merged": "cyan", "shadowed": "yellow", "hidden": "red",
                 WHITEOUT: "magenta"}


class LayerTable(DataTable):
    """The layers pane: a row per layer, bottom first (and the comparison of two images)."""

    BINDINGS = [Binding("k", "cursor_up", show=False), Binding("j", "cursor_down", show=False)]


class BrowseApp(App[int]):
    """Browse one image, or two side by side (the second coloured by ``diff A B``)."""

    TITLE = "layerfs browse"
    CSS = """
    #left { width: 46%; }
    #layers { height: 1fr; border: round $secondary; }
    #detail { height: 1fr; border: round $secondary; }
    #tree { width: 1fr; border: round $secondary; }
    #layers:focus-within, #detail:focus, #tree:focus { border: round $accent; }
    #status { height: 1; background: $boost; }
    #filter { display: none; height: 3; }
    #filter.shown { display: block; }
    """
    BINDINGS = [
        Binding("q", "quit_browser", "quit"),
        Binding("tab", "switch_pane", "switch pane", priority=True),
        Binding("ctrl+f", "filter", "filter"),
        Binding("ctrl+l", "view(0)", "layer changes"),
        Binding("ctrl+a", "view(1)", "aggregated"),
        Binding("ctrl+u", "only_changes", "only changes"),
        Binding("p", "provider", "jump to layer"),
        Binding("escape", "close_filter", show=False),
    ]

    def __init__(self, images: list[tuple[object, str]]) -> None:
        """``images``: one or two (:class:`~layerfs.images.Image`, name) pairs."""
        super().__init__()
        self.sides = [Stacks(image, name) for image, name in images]  # type: ignore[arg-type]
        self.layer_rows: list[LayerRow] = []
        for side, stacks in enumerate(self.sides):
            self.layer_rows += model.layer_rows(stacks.image, side)
        if len(self.sides) == 2:
            self.layer_rows.insert(0, LayerRow(1, COMPARE, created_by=self._compare_title()))
        self.aggregated = False
        self.only_changes = False
        self.view: View | None = None
        self.rows: TreeRows | None = None
        self.marks_ready = False
        self.expanded: set[bytes] = set()
        self.usage: list[usage.Report | None] = [None] * len(self.sides)
        self.pending_path: bytes | None = None
        self.message = ""
        self.background = Background([stacks.image for stacks in self.sides])

    def _compare_title(self) -> str:
        return f"{self.sides[0].name} → {self.sides[1].name}  (diff A B)"

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="left"):
                yield LayerTable(id="layers", cursor_type="row", zebra_stripes=False)
                with VerticalScroll(id="detail", can_focus=True):
                    yield Static(id="facts")
            yield FileTree(id="tree")
        yield Static(id="status")
        yield Input(id="filter", placeholder="filter by name (Enter: back to the tree, "
                                             "Esc: clear)")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(LayerTable)
        table.border_title = "Layers"
        self.query_one("#detail").border_title = "Entry"
        self.query_one(FileTree).border_title = "Tree"
        table.add_column("#", key="index")
        table.add_column("Size", key="size")
        table.add_column("Entries", key="entries")
        table.add_column("Command", key="command")
        table.add_column("DiffID", key="diff_id")
        two = len(self.sides) == 2
        for row in self.layer_rows:
            label = row.index if not two or row.position == COMPARE else "AB"[row.side] + row.index
            if row.position == COMPARE:
                table.add_row(label, "", "", one_line(row.created_by, 40), "",
                              key=_key(row.side, row.position))
                continue
            table.add_row(label, _size(row.size), _count(row.entries),
                          one_line(row.created_by, 40) or "-", row.short_id or "-",
                          key=_key(row.side, row.position))
        # Start where the whole image shows: the top layer (or A -> B).
        start = 0 if two else len(self.layer_rows) - 1
        table.move_cursor(row=start)
        self._select(self.layer_rows[start])
        self.query_one(FileTree).focus()
        self._survey()
        for side in range(len(self.sides)):
            self._measure(side)

    # -- views --------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._select(self.layer_rows[event.cursor_row])

    def _select(self, row: LayerRow) -> None:
        view = View(row.side, row.position, self.aggregated and row.position != COMPARE)
        if view == self.view:
            return
        tree_pane = self.query_one(FileTree)
        current = tree_pane.current
        path = self.pending_path or (current.path if current is not None else None)
        self.pending_path = None
        self.view = view
        try:
            tree = model.tree_of(self.sides, view)
            self.rows = TreeRows(tree, expanded=self.expanded)
        except LayerfsError as exc:
            self._error(exc)
            return
        if self.query_one("#filter", Input).value:
            self.rows.filter = self.query_one("#filter", Input).value
        self.rows.only_changes = self.only_changes
        self.marks_ready = False
        tree_pane.show(self.rows, path)
        tree_pane.border_title = self._tree_title(view, row)
        self._status()
        self._compute_marks(view, path)

    def _tree_title(self, view: View, row: LayerRow) -> str:
        if view.position == COMPARE:
            return f"Tree of B, marked by what differs from A: {self._compare_title()}"
        who = f"{self.sides[view.side].name} " if len(self.sides) == 2 else ""
        what = "changes up to it" if view.aggregated else "its changes"
        title = f"Tree of {who}as of layer {view.position + 1}, marked by {what}"
        return escape(title + (f": {one_line(row.created_by, 100)}" if row.created_by else ""))

    @work(exclusive=True, group="marks")
    async def _compute_marks(self, view: View, path: bytes | None) -> None:
        await asyncio.sleep(DEBOUNCE)  # a newer selection cancels this one meanwhile
        try:
            marks = await asyncio.wrap_future(self.background.marks(view))
        except Exception as exc:  # a layer that cannot be read (from the other process)
            self._error(exc)
            return
        self._marks_ready(view, marks, path)

    def _marks_ready(self, view: View, marks: Marks, path: bytes | None) -> None:
        if view != self.view or self.rows is None or self._gone():
            return
        tree_pane = self.query_one(FileTree)
        current = tree_pane.current
        self.rows.marks = marks
        self.marks_ready = True
        self.rows.rebuild()
        if self.rows.filter:  # the removed entries may match too: search again
            self._apply_filter(self.rows.filter)
        tree_pane.show(self.rows, current.path if current is not None else path)
        self._status()

    def action_view(self, aggregated: int) -> None:
        self.aggregated = bool(aggregated)
        table = self.query_one(LayerTable)
        self._select(self.layer_rows[table.cursor_row])

    def action_only_changes(self) -> None:
        if self.rows is None:
            return
        tree_pane = self.query_one(FileTree)
        current = tree_pane.current
        self.only_changes = not self.only_changes
        self.rows.set_only_changes(self.only_changes)
        tree_pane.show(self.rows, current.path if current is not None else None)
        self._status()

    # -- the filter -----------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    def action_close_filter(self) -> None:
        field = self.query_one("#filter", Input)
        if field.has_focus:
            field.value = ""
            field.remove_class("shown")
            self.query_one(FileTree).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.remove_class("shown")
        self.query_one(FileTree).focus()

    def _apply_filter(self, text: str) -> None:
        if self.rows is None:
            return
        if not text:
            self.rows.set_filter("", None)
            self.query_one(FileTree).show(self.rows)
            self._status()
            return
        self.rows.filter = text
        self._status()
        self._find(self.rows, text)

    @work(exclusive=True, group="filter")
    async def _find(self, rows: TreeRows, text: str) -> None:
        await asyncio.sleep(DEBOUNCE)  # the next key typed cancels this one meanwhile
        assert self.view is not None
        removed = {parent: list(names) for parent, names in rows.marks.removed.items()}
        try:
            found = await asyncio.wrap_future(self.background.find(self.view, removed, text))
        except Exception as exc:  # a layer that cannot be read (from the other process)
            self._error(exc)
            return
        self._found(rows, text, found)

    def _found(self, rows: TreeRows, text: str, found: tuple[set[bytes], set[bytes]]) -> None:
        if rows is not self.rows or rows.filter != text or self._gone():
            return
        rows.set_filter(text, found)
        self.query_one(FileTree).show(rows)
        self._status()

    # -- the entry under the cursor ---------------------------------------------------------------

    def on_file_tree_moved(self, event: FileTree.Moved) -> None:
        if event.row is None or self.rows is None:
            self.query_one("#facts", Static).update("")
            return
        self._facts(self.rows, event.row)

    @work(exclusive=True, group="facts")
    async def _facts(self, rows: TreeRows, row: model.Row) -> None:
        await asyncio.sleep(DEBOUNCE / 2)  # the cursor moving on cancels this one
        try:
            found = await asyncio.to_thread(model.facts, rows.tree, row)
        except (LayerfsError, OSError) as exc:
            self._show_facts_error(row, exc)
            return
        self._show_facts(rows, found)

    def _show_facts_error(self, row: model.Row, exc: Exception) -> None:
        if self._gone():
            return
        self.query_one("#facts", Static).update(
            Text(f"{shown_path(row.path)}\n{exc}", style="red"))

    def _show_facts(self, rows: TreeRows, facts: Facts) -> None:
        if rows is not self.rows or self._gone():
            return
        self.query_one("#facts", Static).update(self._facts_text(facts))

    def _image_of_view(self):
        assert self.view is not None
        return self.sides[1 if self.view.position == COMPARE else self.view.side].image

    def _facts_text(self, facts: Facts) -> Text:
        image = self._image_of_view()
        row = facts.row
        text = Text()
        text.append(shown_path(row.path), style="bold")
        node = row.node
        if node is not None:
            text.append(f"  {type_name(node.mode)} {mode_text(node.mode)} "
                        f"{node.uid}:{node.gid}")
            if not row.is_dir:
                text.append(f" {format_size(node.size)}")
            layer = image.layers[node.layer]
            text.append(f"\nfrom layer {layer_name(layer, node.layer)}", style="green")
            if layer.created_by:
                text.append(f": {one_line(layer.created_by, 120)}", style="dim")
        if facts.target is not None:
            text.append(f"\n→ {facts.target}")
        if row.change is not None:
            change = row.change
            style = MARK_STYLES[change.kind]
            text.append(f"\n{model.LETTERS[change.kind]} {change.kind}", style=style)
            if change.changed:
                text.append(": " + ", ".join(change.changed))
            if change.via:
                text.append(f" by {change.via}")
        hider = facts.provenance.hider
        if node is None and hider is not None:
            text.append("\nhidden: " + describe_hider(image, hider), style="red")
        if facts.provenance.versions:
            text.append("\n\nversions, top layer first:", style="bold")
        for version in facts.provenance.versions:
            layer = image.layers[version.position]
            text.append(f"\n  {layer_name(layer, version.position):<18} ")
            text.append(f"{version.state:<9}", style=_STATE_STYLES.get(version.state, ""))
            if version.state == WHITEOUT:
                text.append(" deletes it from the layers below", style="dim")
                continue
            text.append(f" {version.type:<7} {format_size(version.size):>7} "
                        f"{mode_text(version.mode)} {version.uid}:{version.gid}")
            if version.hider is not None:
                text.append(f"  {describe_hider(image, version.hider)}", style="dim")
        if facts.preview:
            text.append("\n\n" + ("first bytes:" if facts.binary else "first lines:"), style="bold")
            for line in facts.preview:
                text.append("\n" + line)
        return text

    def action_provider(self) -> None:
        """Select the layer that provides the entry under the cursor (the path stays)."""
        row = self.query_one(FileTree).current
        if row is None or self.view is None:
            return
        if row.node is None:
            self.notify("a removed entry: no layer provides it")
            return
        side = 1 if self.view.position == COMPARE else self.view.side
        position = row.node.layer
        number = next(n for n, r in enumerate(self.layer_rows)
                      if r.side == side and r.position == position)
        self.pending_path = row.path
        self.query_one(LayerTable).move_cursor(row=number)
        self._select(self.layer_rows[number])

    # -- figures in the background -------------------------------------------------------------

    @work(group="survey")
    async def _survey(self) -> None:
        # All asked at once, so they are answered before the usage walk queued after them.
        asked = [(row, self.background.survey(row.side, row.position))
                 for row in self.layer_rows if row.position != COMPARE and row.entries is None]
        for row, future in asked:
            try:
                info = await asyncio.wrap_future(future)
            except OSError:
                continue
            model.apply_survey(row, info)
            self._surveyed(row)

    def _surveyed(self, row: LayerRow) -> None:
        if self._gone():
            return
        table = self.query_one(LayerTable)
        key = _key(row.side, row.position)
        table.update_cell(key, "size", _size(row.size))
        table.update_cell(key, "entries", _count(row.entries))

    @work(group="usage")
    async def _measure(self, side: int) -> None:
        try:
            report = await asyncio.wrap_future(self.background.measure(side))
        except Exception as exc:  # a layer that cannot be read (from the other process)
            self._error(exc)
            return
        self._measured(side, report)

    def _measured(self, side: int, report: usage.Report) -> None:
        self.usage[side] = report
        self._status()

    # -- status, panes, errors -------------------------------------------------------------------

    def _gone(self) -> bool:
        """Whether the widgets are gone (an answer arriving as the user quits)."""
        return not self.screen_stack or not self.screen.query("#status")

    def _status(self) -> None:
        if self._gone():
            return
        parts = []
        for side in range(len(self.sides)):
            report = self.usage[side]
            who = f"{'AB'[side]}: " if len(self.sides) == 2 else ""
            if report is None:
                parts.append(f"{who}efficiency … wasted …")
            else:
                parts.append(f"{who}efficiency {report.efficiency * 100:.1f}%  wasted "
                             f"{format_size(report.wasted_bytes)} ({report.wasted_percent:.1f}%)")
        if self.view is not None:
            if self.view.position == COMPARE:
                parts.append("A → B")
            else:
                parts.append(("aggregated to layer " if self.view.aggregated else "layer ")
                             + str(self.view.position + 1))
        if self.rows is not None:
            parts.append(summary_line(self.rows.marks.summary) if self.marks_ready
                         else "changes …")
            if self.rows.only_changes:
                parts.append("only changes")
            if self.rows.filter:
                found = f"{len(self.rows.matched)} found" if self.rows.keep is not None \
                    else "searching…"
                parts.append(f"filter {self.rows.filter!r}: {found}")
        if self.message:
            parts.append(self.message)
        self.query_one("#status", Static).update(escape(" │ ".join(parts)))

    def _error(self, exc: Exception) -> None:
        self.message = f"error: {exc}"
        self._status()

    def action_switch_pane(self) -> None:
        order = [self.query_one(LayerTable), self.query_one(FileTree), self.query_one("#detail")]
        focused = self.focused
        current = next((n for n, pane in enumerate(order) if pane is focused), -1)
        order[(current + 1) % len(order)].focus()

    def action_quit_browser(self) -> None:
        self.exit(0)

    def on_unmount(self) -> None:
        self.background.close()


def _key(side: int, position: int) -> str:
    return f"{side}:{position}"


def _size(value: int | None) -> str:
    return "…" if value is None else format_size(value)


def _count(value: int | None) -> str:
    return "…" if value is None else str(value)
