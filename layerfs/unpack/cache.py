"""The layer cache: tar layers unpacked once, in directories keyed by chainID.

Layout of the cache directory (default ``$XDG_CACHE_HOME/layerfs``)::

    layers/<chainID hex>/root/       the layer's entries (see extract.py)
    layers/<chainID hex>/meta.json   its sidecar (see layerfs/sidecar.py)
    tmp/<name>/, tmp/<name>.lock     unpacks in progress (locked while alive)
    locks/<chainID hex>.lock         held while a layer is being unpacked
    images/<key>.json                which images use which layers (cache ls/prune)
    lazy/, downloads/                the registry's lazy skeletons and partial
                                     downloads (see layerfs/registry/inventory.py)

A layer is unpacked into ``tmp/`` and renamed into ``layers/`` only once its
digests are verified, so ``layers/`` never holds a partial layer. A present
layer is reused without reading its blob. Mounts hold a shared lock on the
layer's ``meta.json`` for as long as they live, so prune skips layers in use.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import ImageError
from ..rmtree import remove_tree
from ..sidecar import SIDECAR_NAME, load_sidecar
from .digests import chain_ids, hex_of, parse_digest, sha256_digest
from .extract import unpack_tar
from .limits import UnpackLimits
from .locks import FileLock
from .progress import Progress
from .staging import ROOT_NAME, hold, publish, remove_entry, staged_entry
from .stream import LayerStream


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "layerfs"


@dataclass
class LayerBlob:
    """A tar layer as an image describes it: how to read it and what it must hash to."""

    label: str
    open: Callable[[], BinaryIO]
    blob_digest: str = ""
    """Digest of the blob as stored (compressed), from the manifest; "" if unknown."""
    diff_id: str = ""
    """DiffID from the image config; "" if unknown (pre-1.10 docker save)."""
    size: int | None = None


@dataclass
class CachedLayer:
    chain_id: str
    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / ROOT_NAME

    @property
    def sidecar_path(self) -> Path:
        return self.directory / SIDECAR_NAME

    def info(self) -> dict:
        return load_sidecar(self.sidecar_path).info


def parent_chain(parent: str | None, diff_id: str) -> str:
    return diff_id if not parent else sha256_digest(f"{parent} {diff_id}".encode())


class LayerCache:
    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 privileged: bool | None = None, limits: UnpackLimits | None = None) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()
        self.limits = limits or UnpackLimits.from_env()
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self.layers_dir = self.directory / "layers"
        self.tmp_dir = self.directory / "tmp"
        self.locks_dir = self.directory / "locks"
        self.images_dir = self.directory / "images"
        self._held: list[FileLock] = []

    # -- lookups -----------------------------------------------------------------

    def layer(self, chain_id: str) -> CachedLayer:
        return CachedLayer(chain_id, self.layers_dir / hex_of(chain_id))

    def find(self, chain_id: str) -> CachedLayer | None:
        """The cached layer, if it is complete in the cache."""
        cached = self.layer(chain_id)
        return cached if cached.sidecar_path.is_file() else None

    # -- unpacking ---------------------------------------------------------------

    def ensure(self, blob: LayerBlob, parent: str | None,
               progress: Progress | None = None) -> CachedLayer:
        """The cached layer for ``blob`` on top of chain ``parent``, unpacking it if needed.

        The returned layer is held (shared lock) until this process exits.
        """
        self._make_dirs()
        if blob.diff_id:
            parse_digest(blob.diff_id, f"layer {blob.label}: DiffID")
            chain = parent_chain(parent, blob.diff_id)
            cached = self._hold_existing(chain)
            if cached is not None:
                return cached
            with FileLock(self.locks_dir / f"{hex_of(chain)}.lock"):
                cached = self._hold_existing(chain)
                if cached is not None:
                    return cached
                return self._unpack(blob, parent, progress, chain_locked=True)
        return self._unpack(blob, parent, progress, chain_locked=False)

    def _unpack(self, blob: LayerBlob, parent: str | None, progress: Progress | None,
                *, chain_locked: bool) -> CachedLayer:
        self.remove_stale_tmp()
        with staged_entry(self.tmp_dir) as work:
            info = self._unpack_into(blob, work / ROOT_NAME, progress)
            chain = parent_chain(parent, info["diff_id"])
            info["chain_id"] = chain
            writer_sidecar = info.pop("_sidecar")
            writer_sidecar.info = info
            writer_sidecar.save(work / SIDECAR_NAME)
            if chain_locked:
                return self._publish(work, chain)
            with FileLock(self.locks_dir / f"{hex_of(chain)}.lock"):
                return self._publish(work, chain)

    def _unpack_into(self, blob: LayerBlob, root: Path, progress: Progress | None) -> dict:
        if progress is not None:
            progress.start_layer(blob.label, blob.size)
        try:
            raw = blob.open()
        except FileNotFoundError:
            raise ImageError(f"layer {blob.label}: blob is missing") from None
        except PermissionError:
            raise ImageError(f"layer {blob.label}: blob is not readable (permission denied)") \
                from None
        with raw:
            stream = LayerStream(raw, blob.label, progress.advance if progress else None,
                                 max_size=self.limits.max_layer_size)
            final_root = self.layers_dir / ("0" * 64) / ROOT_NAME
            try:
                writer = unpack_tar(stream, os.fsencode(root), privileged=self.privileged,
                                    limits=self.limits,
                                    final_root_length=len(os.fsencode(final_root)))
            finally:
                stream.close()
        if progress is not None:
            progress.end_layer()
        verify_digests(blob, stream)
        return {
            "label": blob.label,
            "diff_id": stream.diff_id,
            "blob_digest": blob.blob_digest or stream.blob_digest,
            "blob_size": stream.blob_size,
            "diff_size": stream.diff_size,
            "compression": stream.compression,
            "entries": writer.entries,
            "file_bytes": writer.file_bytes,
            "has_xattrs": writer.has_xattrs,
            "privileged": self.privileged,
            "unpacked_at": int(time.time()),
            "_sidecar": writer.sidecar,
        }

    def _publish(self, work: Path, chain: str) -> CachedLayer:
        """Rename a verified unpack into place (chain lock held); a layer already there wins."""
        target = self.layer(chain)
        if target.sidecar_path.is_file():
            remove_tree(work)
        else:
            publish(work, target.directory)
        held = self._hold_existing(chain)
        if held is None:
            raise ImageError(f"layer {chain}: vanished from the cache while being used")
        return held

    def _hold_existing(self, chain: str) -> CachedLayer | None:
        cached = self.find(chain)
        if cached is None:
            return None
        lock = hold(cached.sidecar_path)
        if lock is None:  # pruned or discarded in between
            return None
        self._held.append(lock)
        return cached

    def release(self, cached: CachedLayer) -> None:
        """Stop holding a layer this process got from :meth:`ensure`."""
        path = str(cached.sidecar_path)
        for lock in [lock for lock in self._held if lock.path == path]:
            lock.release()
            self._held.remove(lock)

    def remove_layer(self, cached: CachedLayer) -> bool:
        """Remove a layer unless someone (a mount, an unpack) holds it; whether it was removed."""
        return remove_entry(cached.directory, cached.sidecar_path, self.tmp_dir)

    def discard(self, created: list[CachedLayer]) -> None:
        """Undo the layers an image open added before it failed (nothing left behind)."""
        for cached in created:
            self.release(cached)
            self.remove_layer(cached)

    def record_image(self, source: str, name: str, chain_ids: list[str],
                     lazy_blobs: list[str] | None = None) -> None:
        """Note which layers an image uses, for ``cache ls`` and ``cache prune``
        (``lazy_blobs``: the blobs of its layers mounted from lazy skeletons)."""
        if not source:
            return
        self._make_dirs()
        key = hashlib.sha256(f"{source}\0{name}".encode("utf-8", "surrogateescape")).hexdigest()
        record = {"source": source, "name": name, "chain_ids": chain_ids,
                  "used_at": int(time.time())}
        if lazy_blobs:
            record["lazy_blobs"] = lazy_blobs
        tmp = self.images_dir / f".{key}.{os.getpid()}"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.images_dir / f"{key}.json")

    # -- housekeeping ---------------------------------------------------------------

    def _make_dirs(self) -> None:
        for directory in (self.layers_dir, self.tmp_dir, self.locks_dir, self.images_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def remove_stale_tmp(self) -> int:
        """Remove unpacks left by dead processes (kill -9, power loss); their count."""
        removed = 0
        if not self.tmp_dir.is_dir():
            return 0
        for entry in os.scandir(self.tmp_dir):
            if entry.name.endswith(".lock"):
                continue
            lock = FileLock(self.tmp_dir / f"{entry.name}.lock")
            if not lock.acquire(wait=False):
                continue
            try:
                remove_tree(Path(entry.path))
                removed += 1
            finally:
                lock.release()
                try:
                    os.unlink(lock.path)
                except FileNotFoundError:
                    pass
        return removed

    def chain_ids(self, diff_ids: list[str]) -> list[str]:
        return chain_ids(diff_ids)


def verify_digests(blob: LayerBlob, stream: LayerStream) -> None:
    """Compare what a fully read stream hashed to with what the image says."""
    if blob.blob_digest and blob.blob_digest.startswith("sha256:") \
            and blob.blob_digest != stream.blob_digest:
        raise ImageError(f"layer {blob.label}: blob digest mismatch: the manifest says "
                         f"{blob.blob_digest}, the blob is {stream.blob_digest}")
    if blob.diff_id and blob.diff_id != stream.diff_id:
        raise ImageError(f"layer {blob.label}: DiffID mismatch: the config says "
                         f"{blob.diff_id}, the uncompressed layer is {stream.diff_id}")
