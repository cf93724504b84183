"""Bounds on what one layer may make the unpacker do: a tar bomb or a decompression bomb
is refused with a clear message instead of filling the disk or the memory.

The defaults are generous (far above any real image layer); a user sets
tighter or looser ones with ``--max-layer-size``/``--max-entries`` or the
environment (``LAYERFS_MAX_LAYER_SIZE``, ``LAYERFS_MAX_ENTRIES``). Sizes
take a binary suffix: ``500M``, ``64G``, ``1T``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import UsageError

ENV_MAX_LAYER_SIZE = "LAYERFS_MAX_LAYER_SIZE"
ENV_MAX_ENTRIES = "LAYERFS_MAX_ENTRIES"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class UnpackLimits:
    max_layer_size: int = 256 << 30
    """Bytes of one layer: its uncompressed tar stream, and the sum of its files' sizes
    (a sparse file counts with its full apparent size)."""
    max_entries: int = 5_000_000
    """Tar entries in one layer (the unpacker keeps a few hundred bytes per entry)."""
    max_header_size: int = 1 << 20
    """Bytes of one PAX or GNU long-name header (they are read into memory)."""
    max_header_chain: int = 8
    """Extended headers in front of one entry."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *,
                 max_layer_size: str | None = None,
                 max_entries: str | None = None) -> "UnpackLimits":
        """The defaults, overridden by the environment, overridden by the arguments (the
        command line's strings)."""
        env = os.environ if environ is None else environ
        size_text = max_layer_size or env.get(ENV_MAX_LAYER_SIZE)
        entries_text = max_entries or env.get(ENV_MAX_ENTRIES)
        defaults = cls()
        return cls(
            max_layer_size=parse_size(size_text, "--max-layer-size") if size_text
            else defaults.max_layer_size,
            max_entries=parse_count(entries_text, "--max-entries") if entries_text
            else defaults.max_entries,
        )


def parse_size(text: str, what: str) -> int:
    match = _SIZE.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{what} {text}: expected a size such as 500M, 64G or 1T")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_count(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) == 0:
        raise UsageError(f"{what} {text}: expected a positive whole number")
    return int(text)


def size_text(value: int) -> str:
    """A byte count as the user would write it (exact when it is a whole unit)."""
    for unit in ("T", "G", "M", "K"):
        if value >= _UNITS[unit] and value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return f"{value} bytes"
