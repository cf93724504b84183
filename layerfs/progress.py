"""The one progress display: rows of work (layers pulled, unpacked, a commit) on stderr.

Drawn with rich's live progress bars, only when stderr is a terminal and the
command is not ``--quiet``; otherwise every call is a no-op, so callers never
ask. rich honours ``NO_COLOR`` (and ``TERM=dumb``). Amounts use the one size
spelling of :mod:`layerfs.sizes`. Rows may be updated from several threads.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from .sizes import format_size


class _Amount(ProgressColumn):
    """``3.1M/24M  13%``, or what is done so far when the total is not known."""

    def render(self, task: Task) -> Text:
        if task.total:
            percent = 100 * min(task.completed, task.total) // task.total
            return Text(f"{format_size(task.completed)}/{format_size(task.total)} "
                        f"{percent:3.0f}%")
        return Text(format_size(task.completed) if task.completed else "")


class Row:
    """One line: a label, a bar, the amount, a state word."""

    def __init__(self, board: "Board", task: TaskID | None) -> None:
        self.board = board
        self.task = task

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.board.bars.advance(self.task, nbytes)  # type: ignore[union-attr]

    def update(self, *, completed: int | None = None, total: int | None = None,
               state: str | None = None, label: str | None = None) -> None:
        if self.task is None:
            return
        fields: dict = {}
        if state is not None:
            fields["state"] = state
        self.board.bars.update(self.task, completed=completed,  # type: ignore[union-attr]
                               total=total, description=label, **fields)


class Board:
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self.bars: Progress | None = None
        if self.enabled:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), _Amount(),
                                 TextColumn("{task.fields[state]}"),
                                 console=Console(file=self.stream), refresh_per_second=10)
            self.bars.start()

    def row(self, label: str, total: int | None = None, state: str = "") -> Row:
        if self.bars is None:
            return Row(self, None)
        return Row(self, self.bars.add_task(label, total=total or None, state=state))

    def message(self, text: str) -> None:
        if self.bars is not None:
            self.bars.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
