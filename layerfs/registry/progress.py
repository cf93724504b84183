"""One progress line per layer on stderr while a pull runs (only on a terminal).

Rows are updated from the download threads; the block of lines is redrawn
in place at most every 0.1 s. A row also serves as the per-layer ``progress``
the layer cache drives while unpacking (``start_layer``/``advance``/``end_layer``).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from ..sizes import format_size

_REFRESH_SECONDS = 0.1


class LayerRow:
    def __init__(self, board: "PullProgress", label: str, total: int) -> None:
        self.board = board
        self.label = label
        self.total = total
        self.done = 0
        self.state = "waiting"

    # the unpack Progress protocol, driven by LayerCache.ensure
    def start_layer(self, label: str, total_bytes: int | None) -> None:
        self.set("pulling")

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.board.draw()

    def end_layer(self) -> None:
        self.set("verifying")

    def set(self, state: str) -> None:
        self.state = state
        self.board.draw(force=state in ("done", "cached", "failed"))

    def render(self, width: int) -> str:
        if self.state in ("pulling", "verifying") and self.total:
            amount = f"{format_size(self.done)}/{format_size(self.total)}"
            percent = f"{100 * min(self.done, self.total) // self.total:3d}%"
            return f"{self.label:<{width}}  {self.state:<9} {amount:>22} {percent}"
        if self.state == "done":
            return f"{self.label:<{width}}  done      {format_size(self.total):>22}"
        return f"{self.label:<{width}}  {self.state}"


class PullProgress:
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.rows: list[LayerRow] = []
        self._lock = threading.Lock()
        self._drawn = 0
        self._last = 0.0

    def row(self, label: str, total: int) -> LayerRow:
        row = LayerRow(self, label, total)
        self.rows.append(row)
        return row

    def message(self, text: str) -> None:
        if self.enabled:
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < _REFRESH_SECONDS:
            return
        with self._lock:
            self._last = now
            width = max((len(r.label) for r in self.rows), default=0)
            lines = [row.render(width) for row in self.rows]
            up = f"\033[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\r\033[K{line}\n" for line in lines))
            self.stream.flush()
            self._drawn = len(lines)

    def close(self) -> None:
        self.draw(force=True)
