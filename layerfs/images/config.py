"""Reading an image config (OCI config.md / Docker image JSON): DiffIDs and history.

``history`` and ``rootfs.diff_ids`` are not index-aligned: entries with
``empty_layer: true`` have no layer (FORMATS.md 1.4.8).
"""

from __future__ import annotations

from ..errors import ImageError


def diff_ids_of(config: dict, where: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageError(f"{where}: image config has no rootfs.diff_ids list")
    return diff_ids


def layer_history(config: dict, layer_count: int) -> list[str]:
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
