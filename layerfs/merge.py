"""The overlay merge rule for one directory, as a pure function.

Given what each layer holds in one directory (top layer first), decide which
names are visible, which layer provides each, and, for directories, which
layers' copies of it merge below. This is the whole of overlay's lookup rule
(Documentation/filesystems/overlayfs.rst, "Directories" and "whiteouts and
opaque directories"); everything else in layerfs applies it.

- The top-most layer holding a name provides it.
- A non-directory hides everything below it at that path.
- A directory merges with directories of the same name below it, down to the
  first layer where that name is a non-directory or whited out.
- A whiteout hides the name in lower layers only, never in its own layer.
- An opaque directory hides all lower layers' children of that directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence


@dataclass(slots=True)
class DirListing:
    """One layer's contribution to one directory.

    entries maps each real (non-marker) name to whether it is a directory;
    whiteouts are the names this layer deletes from the layers below; opaque
    says whether this layer's copy of the directory hides all lower layers.
    """

    entries: Mapping[bytes, bool] = field(default_factory=dict)
    whiteouts: frozenset[bytes] | set[bytes] = frozenset()
    opaque: bool = False


@dataclass(slots=True, frozen=True)
class MergedChild:
    """A visible name: the layer position that provides it and, for a
    directory, every layer position whose directory of that name merges
    into it (top first; the first is the provider)."""

    layer: int
    is_dir: bool
    dir_layers: tuple[int, ...] = ()


def effective_layers(listings: Sequence[tuple[int, DirListing]]) -> list[tuple[int, DirListing]]:
    """The listings that really take part: cut below the first opaque one."""
    taking_part = []
    for position, listing in listings:
        taking_part.append((position, listing))
        if listing.opaque:
            break
    return taking_part


def merge_children(listings: Sequence[tuple[int, DirListing]]) -> dict[bytes, MergedChild]:
    """Merge one directory's listings, given top layer first as (position, listing).

    Listings below an opaque listing are ignored. Returns the visible names.
    """
    listings = effective_layers(listings)
    merged: dict[bytes, MergedChild] = {}
    # Every name seen anywhere, resolved once, top to bottom.
    decided: set[bytes] = set()
    for index, (position, listing) in enumerate(listings):
        for name, is_dir in listing.entries.items():
            if name in decided:
                continue
            decided.add(name)
            if not is_dir:
                merged[name] = MergedChild(position, False)
                continue
            dir_layers = [position]
            if name not in listing.whiteouts:
                for lower_position, lower in listings[index + 1:]:
                    lower_is_dir = lower.entries.get(name)
                    if lower_is_dir is None:
                        if name in lower.whiteouts:
                            break
                        continue
                    if not lower_is_dir:
                        break
                    dir_layers.append(lower_position)
                    if name in lower.whiteouts:
                        break
            merged[name] = MergedChild(position, True, tuple(dir_layers))
        # Names deleted here stay deleted for every layer below.
        decided.update(listing.whiteouts)
    return merged
