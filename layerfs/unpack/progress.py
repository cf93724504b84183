"""Progress of the layers a mount unpacks, one row each (see :mod:`layerfs.progress`).

Shown only when stderr is a terminal and not ``--quiet``; otherwise every
call is a no-op, so callers never ask.
"""

from __future__ import annotations

from typing import TextIO

from ..progress import Board, Row


class Progress:
    """The per-layer protocol :meth:`LayerCache.ensure` drives while it unpacks."""

    def __init__(self, total_layers: int = 0, *, quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.board = Board(quiet=quiet, stream=stream)
        self.enabled = self.board.enabled
        self.total_layers = total_layers
        self.layer = 0
        self._row: Row | None = None

    def start_layer(self, label: str, total_bytes: int | None) -> None:
        self.layer += 1
        self._row = self.board.row(f"unpacking layer {self.layer}/{self.total_layers} {label}",
                                   total_bytes, "unpacking")

    def advance(self, nbytes: int) -> None:
        if self._row is not None:
            self._row.advance(nbytes)

    def end_layer(self) -> None:
        if self._row is not None:
            self._row.update(state="done")

    def close(self) -> None:
        self.board.close()
