"""What the registry keeps in the layer cache besides unpacked layers: lazy skeletons and
partial downloads, for ``layerfs cache ls`` and ``cache prune`` (the unpacked layers are
:mod:`layerfs.unpack.inventory`'s).

- A lazy skeleton (``lazy/<alg>-<hex>/``, :mod:`.lazy.skeleton`) is *in use* while a
  process (a mount) holds its shared lock, *referenced* while a recorded image lists
  its blob (``lazy_blobs``), and *superseded* once the same blob is unpacked whole in
  ``layers/`` (mounts then use that). Prune removes the unreferenced and superseded
  ones (with ``all_layers`` every one) that are not in use.
- A partial download (``downloads/<alg>-<hex>.partial``, :mod:`.download`) is *in use*
  while a pull writes it (it holds its lock). It is only ever a head start, never
  trusted, and referenced by no image: prune removes those not in use.

Sizes are what the files take on disk: a skeleton's files are sparse until read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..sidecar import load_sidecar
from ..sizes import format_size, plural
from ..tables import render
from ..unpack import LayerCache
from ..unpack.inventory import image_records, list_layers
from ..unpack.locks import is_locked
from .download import remove_partial
from .lazy.skeleton import LazyLayer, LazyStore
from .pull import downloads_dir

PARTIAL_SUFFIX = ".partial"


def _digest_of(name: str) -> str:
    """``sha256-<hex>`` (a file or directory name) -> ``sha256:<hex>``."""
    algorithm, _, hex_digest = name.partition("-")
    return f"{algorithm}:{hex_digest}"


def disk_usage(path: str | os.PathLike[str]) -> int:
    """Bytes allocated to the files under ``path`` (not following symlinks; a hard-linked
    file counted once)."""
    total = 0
    linked: set[tuple[int, int]] = set()
    pending = [os.fsencode(path)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                if (st.st_dev, st.st_ino) in linked:
                    continue
                linked.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return total


@dataclass
class SkeletonInfo:
    lazy: LazyLayer
    info: dict
    on_disk: int
    """Bytes the skeleton takes (its files' data fetched so far, and metadata)."""
    images: list[str] = field(default_factory=list)
    in_use: bool = False
    superseded: bool = False

    @property
    def size(self) -> int:
        """The layer's file data when complete."""
        return int(self.info.get("file_bytes") or 0)


@dataclass
class PartialInfo:
    path: Path
    digest: str
    on_disk: int
    in_use: bool


def list_skeletons(cache: LayerCache) -> list[SkeletonInfo]:
    store = LazyStore(cache)
    if not store.directory.is_dir():
        return []
    users: dict[str, list[str]] = {}
    for _, record in image_records(cache):
        for blob in record.get("lazy_blobs") or []:
            users.setdefault(blob, []).append(str(record.get("source")))
    unpacked = {item.info.get("blob_digest") for item in list_layers(cache)}
    skeletons = []
    for entry in sorted(os.scandir(store.directory), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        lazy = LazyLayer(_digest_of(entry.name), Path(entry.path))
        try:
            info = load_sidecar(lazy.sidecar_path).info
        except (OSError, ValueError):
            info = {}
        skeletons.append(SkeletonInfo(lazy, info, disk_usage(entry.path),
                                      users.get(lazy.blob_digest, []),
                                      is_locked(lazy.sidecar_path),
                                      lazy.blob_digest in unpacked))
    return skeletons


def list_partials(cache: LayerCache) -> list[PartialInfo]:
    directory = downloads_dir(cache)
    if not directory.is_dir():
        return []
    partials = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.name.endswith(PARTIAL_SUFFIX):
            continue
        try:
            on_disk = entry.stat(follow_symlinks=False).st_blocks * 512
        except FileNotFoundError:
            continue
        partials.append(PartialInfo(Path(entry.path),
                                    _digest_of(entry.name[:-len(PARTIAL_SUFFIX)]), on_disk,
                                    is_locked(entry.path)))
    return partials


@dataclass
class RegistryPruneReport:
    skeletons: list[str] = field(default_factory=list)
    """Blob digests of the removed skeletons."""
    partials: list[str] = field(default_factory=list)
    freed: int = 0
    kept_in_use: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.skeletons:
            parts.append(f"removed {plural(len(self.skeletons), 'lazy skeleton')}")
        if self.partials:
            parts.append(f"removed {plural(len(self.partials), 'partial download')}")
        if self.skeletons or self.partials:
            parts.append(f"freeing {format_size(self.freed)}")
        if self.kept_in_use:
            kept = plural(len(self.kept_in_use), "lazy skeleton or download",
                          "lazy skeletons or downloads")
            parts.append(f"kept {kept} in use")
        return ", ".join(parts)


def prune_registry(cache: LayerCache, *, all_layers: bool = False) -> RegistryPruneReport:
    """Run after :func:`layerfs.unpack.inventory.prune`: it drops the image records
    that no longer count."""
    report = RegistryPruneReport()
    store = LazyStore(cache)
    for item in list_skeletons(cache):
        if item.images and not item.superseded and not all_layers:
            continue
        if store.remove(item.lazy):
            report.skeletons.append(item.lazy.blob_digest)
            report.freed += item.on_disk
        elif item.lazy.directory.exists():
            report.kept_in_use.append(item.lazy.blob_digest)
    for partial in list_partials(cache):
        if remove_partial(partial.path):
            report.partials.append(partial.digest)
            report.freed += partial.on_disk
        elif partial.path.exists():
            report.kept_in_use.append(partial.digest)
    return report


def render_registry(skeletons: list[SkeletonInfo], partials: list[PartialInfo]) -> str:
    """The ``cache ls`` sections of skeletons and partial downloads ("" if none)."""
    from ..unpack.digests import short
    sections = []
    if skeletons:
        rows = [(short(item.lazy.blob_digest), format_size(item.on_disk), format_size(item.size),
                 str(item.info.get("entries", "-")), "yes" if item.in_use else "no",
                 ", ".join(item.images) or ("- (unpacked whole)" if item.superseded else "-"))
                for item in skeletons]
        sections.append(render(("LAZY BLOB", "ON DISK", "OF SIZE", "ENTRIES", "IN USE",
                                "IMAGES"), rows, right={1, 2, 3}) + "\n"
                        + f"{plural(len(skeletons), 'lazy skeleton')}, "
                        f"{format_size(sum(item.on_disk for item in skeletons))} on disk")
    if partials:
        rows = [(short(partial.digest), format_size(partial.on_disk),
                 "yes" if partial.in_use else "no") for partial in partials]
        sections.append(render(("PARTIAL BLOB", "ON DISK", "IN USE"), rows, right={1}) + "\n"
                        + f"{plural(len(partials), 'partial download')}, "
                        f"{format_size(sum(p.on_disk for p in partials))} on disk")
    return "\n\n".join(sections)
