"""``layerfs pull -o DIR``: what a pull fetched, written as an OCI image layout.

The layout (:class:`layerfs.oci.layout.Layout`) gets the image's manifest
(byte for byte, so its digest holds), config and layer blobs, and an
``index.json`` entry naming the manifest by the reference's tag, replacing an
older entry of that tag. An existing layout is added to; blobs already there
are verified, not fetched again. This module only checks ``DIR`` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..images.files import DirFiles
from ..oci.layout import Layout
from ..oci.model import Descriptor
from .client import Manifest


class LayoutWriter(Layout):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"-o {path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / "oci-layout").is_file():
            raise UsageError(f"-o {path}: a non-empty directory that is not an OCI layout")
        path.mkdir(parents=True, exist_ok=True)
        super().__init__(DirFiles(path))
        self.create()

    def add_manifest(self, manifest: Manifest, tag: str | None) -> None:
        """Store the manifest blob and name it in index.json."""
        self.write_blob(manifest.data, manifest.digest)
        self.add_image(Descriptor.of(manifest.data, manifest.media_type, manifest.digest), tag)
