"""A layer: one read-only directory tree in a stack, and how to reach its files.

Every image source (extracted dirs, OCI layouts, docker archives, stores)
ends in a list of these, bottom first. A layer is a root directory plus
descriptive fields for the tools that explain an image (`which`, `inspect`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from .longpath import reach

CONTENT_KEY = "content"
"""Key in ``Layer.extra`` of a layer whose file data arrives on demand (a lazily
fetched registry layer): an object whose ``ensure(relpath)`` makes the data of the
regular file ``relpath`` present in the layer dir before it is opened. It blocks,
so it is called from a worker thread. The layer's metadata is complete from the start."""


@dataclass(frozen=True)
class Layer:
    root: str
    """Absolute path of the layer's root directory."""

    label: str = ""
    """How the user knows this layer (a dir name, a short DiffID)."""

    diff_id: str = ""
    chain_id: str = ""
    created_by: str = ""

    extra: dict = field(default_factory=dict, compare=False, hash=False)
    """Source-specific facts (blob digest, sizes) for inspect/which."""

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
        """Whether opening a file may first have to fetch its data (see :data:`CONTENT_KEY`)."""
        return CONTENT_KEY in self.extra

    def ensure_content(self, relpath: bytes) -> None:
        """Make the data of regular file ``relpath`` present before it is read: a no-op
        but for lazily fetched layers (see :data:`CONTENT_KEY`). May block."""
        content = self.extra.get(CONTENT_KEY)
        if content is not None:
            content.ensure(relpath)

    def describe(self) -> str:
        return self.label or self.root
