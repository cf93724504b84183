"""Sizes and counts for people: the one formatter and the one parser every command uses.

Units are binary and spelled as users type them (``du -h``, ``--max-layer-size
64G``): ``B``, ``K``, ``M``, ``G``, ``T`` with K = 1024. What is printed can be
typed back: ``format_size`` gives ``512B``, ``3.1M``, ``16G`` (no decimal for
a whole unit) and ``parse_size`` reads those, and ``20MB``, ``20MiB``,
``1.5g``, ``4096`` too.
"""

from __future__ import annotations

import re

UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def format_size(value: int | float | None) -> str:
    """``512B``, ``1.5K``, ``3.1M``, ``16G``; ``-`` for an unknown size."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1024:
        return f"{sign}{value:.0f}B"
    for unit in ("K", "M", "G", "T"):
        scaled = value / UNITS[unit]
        if scaled < 1024 or unit == "T":
            text = f"{scaled:.1f}"
            return f"{sign}{text.removesuffix('.0')}{unit}"
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """Bytes of ``4096``, ``20M``, ``20MB``, ``20MiB``, ``1.5G``; ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size (e.g. 4096, 20M, 1.5G)")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def plural(count: int, word: str, plural_form: str | None = None) -> str:
    """``1 layer``, ``3 layers``, ``0 entries`` (``plural_form`` for irregular words)."""
    if count == 1:
        return f"{count} {word}"
    if plural_form is None:
        plural_form = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" \
            else word + "s"
    return f"{count} {plural_form}"
