"""A layer: one read-only directory tree in a stack, and how to reach its files.

Every image source (extracted dirs, OCI layouts, docker archives, stores)
ends in a list of these, bottom first. A layer is a root directory, what the
merge needs beside it (its sidecar of recorded metadata, the source of file
data that arrives on demand) and frozen descriptive facts for the tools that
explain an image (`which`, `inspect`). Nothing in it changes once made.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Protocol

from .longpath import reach


class ContentSource(Protocol):
    """File data that arrives on demand (a lazily fetched registry layer): the layer's
    metadata is complete from the start, its files' data is not."""

    def ensure(self, relpath: bytes) -> None:
        """Make the data of the regular file ``relpath`` present in the layer dir before
        it is opened. Blocks, so it is called from a worker thread."""


@dataclass(frozen=True)
class LayerFacts:
    """Where a layer came from, for inspect and which: nothing here changes what the
    layer shows. Every field is optional (empty when a source does not know it)."""

    blob: str = ""
    """The archive member holding the layer's tar (archives, layouts)."""
    blob_digest: str = ""
    blob_size: int | None = None
    """The compressed blob's size in bytes."""
    diff_size: int | None = None
    """The uncompressed tar's size in bytes."""
    media_type: str = ""
    compression: str = ""
    entries: int | None = None
    """The number of tar entries (once unpacked)."""
    registry: str = ""
    """The image reference a registry layer was fetched for."""
    lazy: str = ""
    """The table-of-contents format (``estargz``, ``zstd:chunked``) of a layer mounted
    before its data is fetched."""
    pending: bool = False
    """A registry layer pulled whole in the background after the mount went live."""
    v1_id: str = ""
    """The v1 layer id of a legacy ``docker save`` archive."""
    store_layer_id: str = ""
    store_path: str = ""
    """The layer's directory in a store (containers-storage, containerd, docker)."""
    cache_id: str = ""
    """Docker's cache-id of the layer."""
    snapshot_key: str = ""
    """containerd's snapshot key."""
    full_copy_of_layers: int | None = None
    """A vfs-driver layer that is a full copy of this many layers (the others left out)."""


@dataclass(frozen=True)
class Layer:
    root: str
    """Absolute path of the layer's root directory."""

    label: str = ""
    """How the user knows this layer (a dir name, a short DiffID)."""

    diff_id: str = ""
    chain_id: str = ""
    created_by: str = ""

    sidecar: str | None = field(default=None, compare=False)
    """The path of the layer's sidecar (what an unprivileged unpack could not store
    on disk, see :mod:`layerfs.sidecar`); None for a plain directory layer."""

    content: ContentSource | None = field(default=None, compare=False, repr=False)
    """Where file data comes from when it is not on disk yet; None when it all is."""

    facts: LayerFacts = field(default_factory=LayerFacts, compare=False)
    """Source-specific facts (blob digest, sizes, store ids) for inspect/which."""

    upper: bool = False
    """The mount's writable upper dir: it holds only the kernel overlay's own
    encodings (0/0 devices, overlay xattrs), so ``.wh.*`` names in it are
    ordinary files, as the kernel shows them."""

    @property
    def root_bytes(self) -> bytes:
        return os.fsencode(self.root)

    def path_of(self, relpath: bytes) -> bytes:
        """The backing path of a layer-relative path (b"" is the root)."""
        root = self.root_bytes
        return root + b"/" + relpath if relpath else root

    def at(self, relpath: bytes, *, room: int = 0) -> contextlib.AbstractContextManager[bytes]:
        """A path to ``relpath`` for the ``with`` block, however deep it is
        (:meth:`path_of` gives paths the kernel refuses past PATH_MAX); ``room``:
        bytes to spare after it (see :func:`~layerfs.longpath.reach`)."""
        return reach(self.root_bytes, relpath, room=room)

    @property
    def fetches_content(self) -> bool:
        """Whether opening a file may first have to fetch its data (see :attr:`content`)."""
        return self.content is not None

    def ensure_content(self, relpath: bytes) -> None:
        """Make the data of regular file ``relpath`` present before it is read: a no-op
        but for lazily fetched layers (see :attr:`content`). May block."""
        if self.content is not None:
            self.content.ensure(relpath)

    def describe(self) -> str:
        return self.label or self.root
