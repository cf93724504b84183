"""Following overlay redirects: where the lower layers hold a renamed directory.

When an overlay mount renames a directory that lower layers contribute to
(``redirect_dir=on``), only the directory itself moves in the upper layer;
its lower copies stay where they were, and the moved directory carries
``overlay.redirect`` naming that place: a bare name (moved within its
parent) or an absolute path from the layers' root. The kernel's lookup
(``ovl_lookup``) then continues in the layers below at the redirected place,
and a copy found there may redirect again.

This module is the rule, as a pure function over a ``probe`` that reports
what one layer holds at one path; :mod:`layerfs.scan` provides the probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

MISSING = "missing"
WHITEOUT = "whiteout"
DIR = "dir"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Probe:
    """What one layer holds at one path."""

    kind: str
    opaque: bool = False
    """A dir that hides the layers below (itself, or a dir on the way to it)."""
    redirect: bytes | None = None


Prober = Callable[[int, bytes], Probe]


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def _clean(value: bytes) -> bytes:
    return value.rstrip(b"\0")


def redirected_stack(position: int, redirect: bytes,
                     parent_stack: Sequence[tuple[int, bytes]],
                     all_positions: Sequence[int], probe: Prober) -> list[tuple[int, bytes]]:
    """The lower copies of a directory whose copy in layer ``position`` carries
    ``redirect``, as (layer position, path in that layer), top first.

    ``parent_stack`` is the parent directory's own stack (position, path),
    searched for a relative redirect; an absolute one is searched in every
    layer below (``all_positions``, top first), as the kernel does from its
    root's stack.
    """
    found: list[tuple[int, bytes]] = []
    target = _clean(redirect)
    absolute = target.startswith(b"/")
    path = target.strip(b"/") if absolute else b""
    name = b"" if absolute else target
    below = position
    while True:
        if absolute:
            candidates: list[tuple[int, bytes]] = [(q, path) for q in all_positions if q < below]
        else:
            candidates = [(q, _join(parent, name)) for q, parent in parent_stack if q < below]
        redirected = False
        for q, qpath in candidates:
            if not qpath:
                return found  # a redirect to the root is not followed
            held = probe(q, qpath)
            if held.kind == MISSING:
                continue
            if held.kind != DIR:
                return found
            found.append((q, qpath))
            if held.opaque:
                return found
            if held.redirect:
                value = _clean(held.redirect)
                if value.startswith(b"/"):
                    absolute, path = True, value.strip(b"/")
                elif absolute:
                    path = _join(path.rpartition(b"/")[0], value)
                else:
                    name = value
                below = q
                redirected = True
                break
        if not redirected:
            return found
