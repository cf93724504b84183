"""Bounds on what one layer may make the unpacker do: a tar bomb or a decompression bomb
is refused with a clear message instead of filling the disk or the memory.

The defaults are generous (far above any real image layer); a user sets
tighter or looser ones with ``--max-layer-size``/``--max-entries`` or the
environment (``LAYERFS_MAX_LAYER_SIZE``, ``LAYERFS_MAX_ENTRIES``). Sizes
take a binary suffix: ``500M``, ``64G``, ``1T``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import sizes
from ..errors import UsageError

ENV_MAX_LAYER_SIZE = "LAYERFS_MAX_LAYER_SIZE"
ENV_MAX_ENTRIES = "LAYERFS_MAX_ENTRIES"


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
            max_layer_size=parse_limit(size_text, "--max-layer-size") if size_text
            else defaults.max_layer_size,
            max_entries=parse_count(entries_text, "--max-entries") if entries_text
            else defaults.max_entries,
        )


def parse_limit(text: str, what: str) -> int:
    """A limit's size (``what`` names the option in the error): >= 1 byte."""
    try:
        value = sizes.parse_size(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{what} {text}: expected a size such as 500M, 64G or 1T")
    return value


def parse_count(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) == 0:
        raise UsageError(f"{what} {text}: expected a positive whole number")
    return int(text)
