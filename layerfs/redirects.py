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
    """What one layer holds at one path (walked from the layer's root)."""

    kind: str
    opaque: bool = False
    """The layers below are hidden: an opaque dir (or one on the way, unless an
    absolute redirect after it points elsewhere)."""
    redirects: tuple[tuple[int, bytes], ...] = ()
    """(component index, value) of every redirect met on the way, in order
    (also when the walk then finds nothing)."""


Prober = Callable[[int, bytes], Probe]


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def _clean(value: bytes) -> bytes:
    return value.rstrip(b"\0")


def renamed(name: bytes, walked: int, redirects: Sequence[tuple[int, bytes]]) -> bytes:
    """The lookup name for the layers below after a walk of ``walked`` components
    met ``redirects``: each replaces the part of the name up to its component
    (a relative one only that component), the rest of the name stays."""
    if not name.startswith(b"/"):
        # A single name looked up in the parent: only its own redirect counts.
        for index, value in redirects:
            if index == walked - 1:
                name = _clean(value)
        return name
    current = [part for part in name.split(b"/") if part]
    for index, value in redirects:
        value = _clean(value)
        prefix = len(current) - (walked - index)
        if value.startswith(b"/"):
            current = [part for part in value.split(b"/") if part] + current[prefix + 1:]
        else:
            current = current[:prefix] + [value] + current[prefix + 1:]
    return b"/" + b"/".join(current)


def redirected_stack(position: int, redirect: bytes,
                     parent_stack: Sequence[tuple[int, bytes]],
                     all_positions: Sequence[int], probe: Prober) -> list[tuple[int, bytes]]:
    """The lower copies of a directory whose copy in layer ``position`` carries
    ``redirect``, as (layer position, path in that layer), top first.

    A relative redirect names the dir in its parent: it is looked up in the
    parent directory's own stack (``parent_stack``: position, path). An
    absolute one is a path from the layers' root, looked up in every layer
    below (``all_positions``, top first), as the kernel does from its root's
    stack; redirects met on the way there rewrite it (the kernel's
    ``ovl_lookup_layer``).
    """
    found: list[tuple[int, bytes]] = []
    parent_paths = dict(parent_stack)
    name = _clean(redirect)
    below = position
    while True:
        absolute = name.startswith(b"/")
        pool = all_positions if absolute else [q for q, _ in parent_stack]
        q = next((q for q in pool if q < below), None)
        if q is None:
            return found
        below = q
        qpath = name.strip(b"/") if absolute else _join(parent_paths[q], name)
        if not qpath:
            return found  # a redirect to the root is not followed
        held = probe(q, qpath)
        if held.redirects:
            # Redirects on the way count even where the walk finds nothing.
            walked = len([part for part in qpath.split(b"/") if part]) if absolute else 1
            name = renamed(name, walked, held.redirects)
        if held.kind == MISSING:
            continue
        if held.kind != DIR:
            return found
        found.append((q, qpath))
        if held.opaque:
            return found
