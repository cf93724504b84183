"""Entry names of a layer tar, normalised and checked before anything touches the disk.

FORMATS.md 1.4.2: names may start with ``/``, ``./`` or be ``.``/``/``
themselves (the layer root); they are relative to the image root. A ``..``
component would leave the layer, so it is refused, naming the entry.
"""

from __future__ import annotations

import os

from ..errors import ImageError

NAME_MAX = 255


class UnsafeEntryError(ImageError):
    """A tar entry that would write outside the layer."""


def entry_path(name: str | bytes, label: str, what: str = "entry") -> bytes:
    """The layer-relative path (b"" for the root) of a tar entry name."""
    raw = os.fsencode(name)
    parts = [part for part in raw.split(b"/") if part and part != b"."]
    if b".." in parts:
        raise UnsafeEntryError(f"layer {label}: {what} '{shown(raw)}' has a '..' component "
                               "(it would leave the layer)")
    return b"/".join(parts)


def shown(path: bytes) -> str:
    """A path as the user should see it in a one-line error."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
