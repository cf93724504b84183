"""A lazy layer's directory: every entry with its metadata, regular files sparse.

The unpacker's :class:`~layerfs.unpack.extract.LayerWriter` writes the skeleton
from the table of contents (``sparse=True``), so a lazy layer encodes owners, modes, devices,
xattrs, whiteouts, hard links and implied directories exactly as an unpacked
one does (sidecar included); only its regular files are sparse, of their real
size, until :mod:`.content` fills them.

Layout, beside the layer cache's ``layers/``::

    lazy/<alg>-<blob hex>/root/          the skeleton
    lazy/<alg>-<blob hex>/meta.json      its sidecar
    lazy/<alg>-<blob hex>/content.json   where each file's data is in the blob
    lazy/<alg>-<blob hex>/fetched.log    files whose data is present

A skeleton depends on the blob alone, so it is keyed by the blob digest and
shared by every image and mount using that blob. It is built in ``tmp/`` and
renamed into place, like an unpacked layer. A process using a skeleton holds a
shared lock on its ``meta.json`` until it exits (a mount daemon: for the mount's
life), so ``layerfs cache prune`` (:meth:`LazyStore.remove`) leaves it alone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import ImageError
from ...sidecar import SIDECAR_NAME
from ...unpack import LayerCache
from ...unpack.digests import parse_digest
from ...unpack.extract import LayerWriter
from ...unpack.locks import FileLock
from ...unpack.names import entry_path
from ...unpack.staging import ROOT_NAME, hold, publish, remove_entry, staged_entry
from .toc import FileData, Toc

LAZY_DIR = "lazy"
PLAN_NAME = "content.json"
FETCHED_NAME = "fetched.log"
PLAN_VERSION = 1


@dataclass
class LazyLayer:
    blob_digest: str
    directory: Path
    held: FileLock | None = field(default=None, compare=False, repr=False)
    """The shared lock this process holds on the skeleton (see :meth:`LazyStore.ensure`)."""

    @property
    def root(self) -> Path:
        return self.directory / ROOT_NAME

    @property
    def sidecar_path(self) -> Path:
        return self.directory / SIDECAR_NAME

    @property
    def plan_path(self) -> Path:
        return self.directory / PLAN_NAME

    @property
    def fetched_path(self) -> Path:
        return self.directory / FETCHED_NAME

    def plan(self) -> tuple[str, dict[bytes, FileData]]:
        document = json.loads(self.plan_path.read_text())
        return document["kind"], {os.fsencode(path): FileData.from_json(value)
                                  for path, value in document["files"].items()}


class LazyStore:
    def __init__(self, cache: LayerCache) -> None:
        self.cache = cache
        self.directory = cache.directory / LAZY_DIR

    def layer(self, blob_digest: str) -> LazyLayer:
        algorithm, hex_digest = parse_digest(blob_digest, "blob")
        return LazyLayer(blob_digest, self.directory / f"{algorithm}-{hex_digest}")

    def find(self, blob_digest: str) -> LazyLayer | None:
        lazy = self.layer(blob_digest)
        return lazy if lazy.plan_path.is_file() else None

    def ensure(self, blob_digest: str, label: str, read: Callable[[], Toc | None]
               ) -> LazyLayer | None:
        """The skeleton of the blob, built from ``read()`` if missing (None if the
        layer turned out not to be lazily mountable); held until this process exits."""
        found = self._hold_existing(blob_digest)
        if found is not None:
            return found
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cache.locks_dir.mkdir(parents=True, exist_ok=True)
        target = self.layer(blob_digest)
        with FileLock(self._build_lock(target)):
            found = self._hold_existing(blob_digest)
            if found is not None:
                return found
            toc = read()
            if toc is None:
                return None
            self._build(target, toc, label)
            found = self._hold_existing(blob_digest)
        if found is None:
            raise ImageError(f"layer {label}: its lazy skeleton vanished while being used")
        return found

    def remove(self, lazy: LazyLayer) -> bool:
        """Remove a skeleton unless a process holds it; whether it was removed."""
        return remove_entry(lazy.directory, lazy.sidecar_path, self.cache.tmp_dir)

    def _build_lock(self, target: LazyLayer) -> Path:
        return self.cache.locks_dir / f"lazy-{target.directory.name}.lock"

    def _hold_existing(self, blob_digest: str) -> LazyLayer | None:
        found = self.find(blob_digest)
        if found is None:
            return None
        found.held = hold(found.sidecar_path)
        if found.held is None:  # pruned in between
            return None
        return found

    def _build(self, target: LazyLayer, toc: Toc, label: str) -> None:
        cache = self.cache
        with staged_entry(cache.tmp_dir) as work:
            writer = LayerWriter(os.fsencode(work / ROOT_NAME), label,
                                 privileged=cache.privileged, sparse=True)
            plan: dict[bytes, FileData] = {}
            for member, data in toc.entries:
                writer.add(member, None)  # type: ignore[arg-type]  # sparse: reads no data
                path = entry_path(member.name, label)
                if member.islnk():
                    source = plan.get(entry_path(member.linkname, label))
                    if source is not None:
                        plan[path] = source
                elif data is not None:
                    plan[path] = data
                else:
                    plan.pop(path, None)
            sidecar = writer.finish()
            sidecar.info = {"label": label, "blob_digest": target.blob_digest,
                            "lazy": toc.kind, "entries": writer.entries,
                            "file_bytes": writer.file_bytes, "privileged": cache.privileged,
                            "built_at": int(time.time())}
            sidecar.save(work / SIDECAR_NAME)
            document = {"version": PLAN_VERSION, "blob": target.blob_digest, "kind": toc.kind,
                        "files": {os.fsdecode(p): d.to_json() for p, d in plan.items()}}
            (work / PLAN_NAME).write_text(json.dumps(document, separators=(",", ":")))
            (work / FETCHED_NAME).touch()
            publish(work, target.directory)
