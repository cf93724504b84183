"""Output for the explore commands: tables, paths, colour, JSON (sizes: :mod:`layerfs.sizes`,
tables: :mod:`layerfs.tables`).

Colour (ANSI) only when the stream is a terminal and ``NO_COLOR`` is unset;
piped output is plain text that scripts can cut.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence, TextIO

from .. import tables

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
          "magenta": "35", "cyan": "36"}


def colour_enabled(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Painter:
    """Wraps text in ANSI styles, or leaves it alone when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_CODES[s] for s in styles if s in _CODES)
        return f"\x1b[{codes}m{text}\x1b[0m" if codes else text




def shown_path(relpath: bytes) -> str:
    """A merged-tree path for a terminal: absolute, control bytes and bad UTF-8 escaped."""
    text = "/" + relpath.decode("utf-8", "backslashreplace")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in text)
    return text


def json_path(relpath: bytes) -> str:
    """A merged-tree path in JSON: absolute, ``os.fsdecode`` (bad bytes as \\udcXX)."""
    return "/" + os.fsdecode(relpath)


def parse_path(text: str) -> bytes:
    """A user-given path (absolute or relative to the image root) as an index path."""
    return b"/".join(p for p in os.fsencode(text).split(b"/") if p and p != b".")


def mode_text(mode: int | None) -> str:
    return "-" if mode is None else f"{mode & 0o7777:04o}"


def one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], paint: Painter,
          styles: Sequence[Sequence[str] | None] | None = None, indent: str = "") -> str:
    """Columns under a header (:mod:`layerfs.tables`: drawn by rich on a terminal, plain
    padded columns when piped); ``styles`` gives per-row styles, used when ``paint`` is."""
    return tables.render(header, rows, styles=styles if paint.enabled else None, indent=indent)


def dumps(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True)
