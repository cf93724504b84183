"""One progress row per layer on stderr while a pull runs (see :mod:`layerfs.progress`).

Rows are updated from the download threads. A row also serves as the
per-layer ``progress`` the layer cache drives while unpacking
(``start_layer``/``advance``/``end_layer``).
"""

from __future__ import annotations

from typing import TextIO

from ..progress import Board, Row


class LayerRow:
    def __init__(self, row: Row, total: int | None) -> None:
        self.row = row
        self.total = total
        self.state = "waiting"

    # the unpack Progress protocol, driven by LayerCache.ensure
    def start_layer(self, label: str, total_bytes: int | None) -> None:
        self.set("pulling")

    def advance(self, nbytes: int) -> None:
        self.row.advance(nbytes)

    def end_layer(self) -> None:
        self.set("verifying")

    def set(self, state: str) -> None:
        self.state = state
        finished = state in ("done", "cached") and self.total
        self.row.update(state=state, completed=self.total if finished else None)


class PullProgress(Board):
    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        super().__init__(quiet=quiet, stream=stream)
        self.rows: list[LayerRow] = []

    def row(self, label: str, total: int | None = None, state: str = "waiting"  # type: ignore[override]
            ) -> LayerRow:
        layer_row = LayerRow(super().row(label, total, state), total)
        self.rows.append(layer_row)
        return layer_row
