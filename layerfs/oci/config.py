"""An image config (OCI config.md / Docker image JSON): the DiffIDs and the history.

``history`` and ``rootfs.diff_ids`` are not index-aligned: entries with
``empty_layer: true`` have no layer (FORMATS.md 1.4.8). The history is only
shown, so it is read leniently (an odd entry says nothing); the DiffIDs
identify the layers, so they must be a list of strings. The whole object is
kept as ``raw``: ``inspect`` shows it and a commit extends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ImageError


def diff_ids_of(config: object, where: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageError(f"{where}: image config has no rootfs.diff_ids list")
    return diff_ids


def layer_history(config: object, layer_count: int) -> list[str]:
    """The ``created_by`` line of each layer, bottom first ("" where history says nothing)."""
    history = config.get("history") if isinstance(config, dict) else None
    lines: list[str] = []
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or entry.get("empty_layer"):
            continue
        lines.append(str(entry.get("created_by", "")))
    if len(lines) != layer_count:
        lines = (lines + [""] * layer_count)[:layer_count]
    return lines


@dataclass(frozen=True, slots=True)
class ImageConfig:
    diff_ids: tuple[str, ...]
    created_by: tuple[str, ...]
    """One line per layer (aligned with ``diff_ids``)."""
    raw: Mapping[str, object] = field(compare=False, repr=False)

    @classmethod
    def decode(cls, value: object, where: str) -> ImageConfig:
        """``where`` names the image (messages say "image config")."""
        diff_ids = diff_ids_of(value, where)
        assert isinstance(value, dict)
        return cls(tuple(diff_ids), tuple(layer_history(value, len(diff_ids))), value)
