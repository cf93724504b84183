"""Entry names of a layer tar, normalised and checked before anything touches the disk.

FORMATS.md 1.4.2: names may start with ``/``, ``./`` or be ``.``/``/``
themselves (the layer root); they are relative to the image root. A ``..``
component would leave the layer, so it is refused, naming the entry; so is
a NUL byte (no filesystem name holds one) and a component longer than
NAME_MAX (no filesystem could store it), except for ``.wh.`` whiteout
markers, which never go to disk at that length (FORMATS.md 1.4.5).
"""

from __future__ import annotations

import os

from ..errors import ImageError

NAME_MAX = 255
PATH_MAX = 4096
WHITEOUT_PREFIX = b".wh."
_SHOWN_MAX = 160


class UnsafeEntryError(ImageError):
    """A tar entry that would write outside the layer."""


def entry_path(name: str | bytes, label: str, what: str = "entry") -> bytes:
    """The layer-relative path (b"" for the root) of a tar entry name."""
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise ImageError(f"layer {label}: {what} '{shown(raw)}' has a NUL byte in its name")
    parts = [part for part in raw.split(b"/") if part and part != b"."]
    if b".." in parts:
        raise UnsafeEntryError(f"layer {label}: {what} '{shown(raw)}' has a '..' component "
                               "(it would leave the layer)")
    for position, part in enumerate(parts):
        limit = NAME_MAX
        if position == len(parts) - 1 and part.startswith(WHITEOUT_PREFIX):
            limit += len(WHITEOUT_PREFIX)
        if len(part) > limit:
            raise ImageError(f"layer {label}: {what} '{shown(raw)}' has a name of {len(part)} "
                             f"bytes (a file name holds at most {NAME_MAX})")
    return b"/".join(parts)


def link_target(target: str | bytes, label: str, path: bytes) -> bytes:
    """A symlink's target as bytes; any content is fine except a NUL or an overlong one."""
    raw = os.fsencode(target)
    if not raw or b"\0" in raw or len(raw) >= PATH_MAX:
        raise ImageError(f"layer {label}: symlink '{shown(path)}' has an impossible target "
                         f"('{shown(raw)}', {len(raw)} bytes)")
    return raw


def shown(path: bytes) -> str:
    """A path as the user should see it in a one-line error (long ones abbreviated)."""
    if len(path) > _SHOWN_MAX:
        keep = _SHOWN_MAX // 2
        path = path[:keep] + b"...(%d bytes)..." % len(path) + path[-keep // 2:]
    text = path.decode("utf-8", "backslashreplace")
    return "".join(char if char.isascii() and char.isprintable()
                   else char.encode("unicode_escape").decode("ascii") for char in text)
