"""What the layer cache holds and who uses it: ``layerfs cache ls`` and ``cache prune``.

An image's use of layers is recorded when it is opened (``images/*.json``:
source path, name, chainIDs). A layer is *in use* while a mount holds its
shared lock; *referenced* while a recorded image whose source still exists
lists it. Prune removes unreferenced layers (with ``all_layers`` every
layer) that are not in use, records of vanished images, and leftovers of
killed unpacks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..sidecar import SIDECAR_NAME, load_sidecar
from ..sizes import format_size, plural
from ..tables import render
from .cache import CachedLayer, LayerCache
from .locks import is_locked


@dataclass
class CachedLayerInfo:
    layer: CachedLayer
    info: dict
    images: list[str] = field(default_factory=list)
    in_use: bool = False

    @property
    def size(self) -> int:
        return int(self.info.get("file_bytes") or 0)


def image_records(cache: LayerCache) -> list[tuple[Path, dict]]:
    records = []
    if not cache.images_dir.is_dir():
        return records
    for path in sorted(cache.images_dir.glob("*.json")):
        try:
            records.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            records.append((path, {}))
    return records


REMOTE_SOURCES = ("docker://", "oci://")
"""Records of images pulled from a registry: the cache is where they live."""


def _live(record: dict) -> bool:
    source = record.get("source")
    return bool(source) and (source.startswith(REMOTE_SOURCES) or os.path.exists(source))


def list_layers(cache: LayerCache) -> list[CachedLayerInfo]:
    users: dict[str, list[str]] = {}
    for _, record in image_records(cache):
        if _live(record):
            label = f"{record['source']}" + (f" ({record['name']})" if record.get("name") else "")
            for chain in record.get("chain_ids") or []:
                users.setdefault(chain, []).append(label)
    layers = []
    if not cache.layers_dir.is_dir():
        return layers
    for entry in sorted(os.scandir(cache.layers_dir), key=lambda e: e.name):
        sidecar_path = Path(entry.path) / SIDECAR_NAME
        try:
            info = load_sidecar(sidecar_path).info
        except (OSError, ValueError):
            info = {}
        chain = info.get("chain_id") or f"sha256:{entry.name}"
        layer = CachedLayer(chain, Path(entry.path))
        layers.append(CachedLayerInfo(layer, info, users.get(chain, []),
                                      is_locked(sidecar_path)))
    return layers


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    freed: int = 0
    kept_in_use: list[str] = field(default_factory=list)
    stale_unpacks: int = 0


def prune(cache: LayerCache, *, all_layers: bool = False) -> PruneReport:
    report = PruneReport()
    for path, record in image_records(cache):
        if all_layers or not _live(record):
            path.unlink(missing_ok=True)
    for item in list_layers(cache):
        if item.images and not all_layers:
            continue
        if cache.remove_layer(item.layer):
            report.removed.append(item.layer.chain_id)
            report.freed += item.size
        else:
            report.kept_in_use.append(item.layer.chain_id)
    report.stale_unpacks = cache.remove_stale_tmp()
    return report


def render_layers(items: list[CachedLayerInfo]) -> str:
    from .digests import short
    rows = [(short(item.layer.chain_id), format_size(item.size),
             str(item.info.get("entries", "-")), "yes" if item.in_use else "no",
             ", ".join(item.images) or "-") for item in items]
    total = sum(item.size for item in items)
    return "\n".join([render(("CHAINID", "SIZE", "ENTRIES", "IN USE", "IMAGES"), rows,
                             right={1, 2}),
                      f"{plural(len(items), 'layer')}, {format_size(total)}"])


def cache_json(layers: list[CachedLayerInfo], skeletons: list, partials: list) -> str:
    """``cache ls --json``::

        {"layers": [{"chain_id", "diff_id", "blob_digest", "path", "size", "entries",
                     "in_use", "images": [str]}],
         "lazy_skeletons": [{"blob_digest", "on_disk", "size", "entries", "in_use",
                             "superseded", "images": [str]}],
         "partial_downloads": [{"digest", "path", "on_disk", "in_use"}]}

    (``skeletons`` and ``partials``: :mod:`layerfs.registry.inventory`'s lists.)"""
    return json.dumps({
        "layers": [{"chain_id": item.layer.chain_id, "diff_id": item.info.get("diff_id"),
                    "blob_digest": item.info.get("blob_digest"), "path": str(item.layer.root),
                    "size": item.size, "entries": item.info.get("entries"),
                    "in_use": item.in_use, "images": item.images} for item in layers],
        "lazy_skeletons": [{"blob_digest": item.lazy.blob_digest, "on_disk": item.on_disk,
                            "size": item.size, "entries": item.info.get("entries"),
                            "in_use": item.in_use, "superseded": item.superseded,
                            "images": item.images} for item in skeletons],
        "partial_downloads": [{"digest": item.digest, "path": str(item.path),
                               "on_disk": item.on_disk, "in_use": item.in_use}
                              for item in partials],
    }, indent=2)
