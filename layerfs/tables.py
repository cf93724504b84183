"""The one table renderer of the command line: rows of text cells under a header.

On a terminal (stdout a tty, ``TERM`` not ``dumb``) a table is drawn by rich:
a bold header over a rule, columns fitted to the terminal's width, row
styles in colour; rich honours ``NO_COLOR`` (no colours, the layout stays).
Anywhere else (piped, redirected, captured by a test) it is plain text,
stable for scripts to cut: each column padded with spaces to its widest cell
(right-aligned where the caller says so, for numbers), two spaces apart,
the last column never padded, no escape codes. Either way the caller gets a
string to print.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from typing import Collection, Sequence, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

Styles = Sequence[Sequence[str] | None]
"""Per row: style names (``bold``, ``dim``, ``red``, ``green``, ...) or None."""


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal to draw on."""
    stream = stream or sys.stdout
    return os.environ.get("TERM") != "dumb" and bool(getattr(stream, "isatty", lambda: False)())


def render(header: Sequence[str], rows: Sequence[Sequence[str]], *,
           right: Collection[int] = (), styles: Styles | None = None, indent: str = "",
           stream: TextIO | None = None) -> str:
    """The table for ``stream`` (stdout by default): drawn by rich on a terminal, plain
    text elsewhere. ``right``: the columns aligned right; ``styles``: per row."""
    if on_terminal(stream):
        return _drawn(header, rows, right, styles, indent)
    return plain(header, rows, right=right, indent=indent)


def plain(header: Sequence[str], rows: Sequence[Sequence[str]], *,
          right: Collection[int] = (), indent: str = "") -> str:
    """Columns padded to their widest cell, two spaces apart; the last is never padded."""
    all_rows = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(header))]
    last = len(header) - 1
    lines = []
    for row in all_rows:
        cells = [cell if i == last else cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _drawn(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int],
           styles: Styles | None, indent: str) -> str:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold")  # columns two spaces apart, as in plain text
    for number, title in enumerate(header):
        table.add_column(Text(title), justify="right" if number in right else "left")
    for number, row in enumerate(rows):
        style = styles[number] if styles is not None else None
        # Text cells: a name holding "[...]" is not rich markup.
        table.add_row(*(Text(cell) for cell in row), style=" ".join(style) if style else None)
    width = shutil.get_terminal_size().columns - len(indent)
    console = Console(file=io.StringIO(), force_terminal=True, width=max(width, 20))
    with console.capture() as captured:
        console.print(table)
    return "\n".join(indent + line.rstrip() for line in captured.get().rstrip("\n").split("\n"))
