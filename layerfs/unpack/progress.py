"""A one-line progress display on stderr while layers unpack.

Shown only when stderr is a terminal and not ``--quiet``; otherwise every
call is a no-op, so callers never ask.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..sizes import format_size

_REFRESH_SECONDS = 0.2




class Progress:
    def __init__(self, total_layers: int = 0, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total_layers = total_layers
        self.layer = 0
        self.label = ""
        self.done = 0
        self.total = 0
        self._last = 0.0

    def start_layer(self, label: str, total_bytes: int | None) -> None:
        self.layer += 1
        self.label = label
        self.done = 0
        self.total = total_bytes or 0
        self._draw(force=True)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self._draw()

    def end_layer(self) -> None:
        self._draw(force=True)

    def close(self) -> None:
        if self.enabled and self.layer:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < _REFRESH_SECONDS:
            return
        self._last = now
        of = f"/{format_size(self.total)}" if self.total else ""
        percent = f" {100 * self.done // self.total:3d}%" if self.total else ""
        self.stream.write(f"\r\033[Kunpacking layer {self.layer}/{self.total_layers} "
                          f"{self.label}: {format_size(self.done)}{of}{percent}")
        self.stream.flush()
