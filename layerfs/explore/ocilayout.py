"""``commit --into``: the existing OCI layout a committed layer is appended to.

The append itself (base config + the layer's DiffID and a history entry, a
new manifest, ``index.json`` under the tag, every write atomic) is
:meth:`layerfs.oci.layout.Layout.append_layer`; this module opens the
layout, hands it the committed blob and dates the history entry.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from ..errors import ImageError
from ..images.files import DirFiles
from ..oci.layout import Layout as OciLayout
from ..oci.model import Descriptor
from .commit import CommittedLayer


def rfc3339(epoch: int | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(
        epoch if epoch is not None else int(datetime.datetime.now().timestamp()),
        tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Layout(OciLayout):
    """An OCI layout directory that must exist already."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise ImageError(f"{path}: not an OCI image layout (no oci-layout/index.json)")
        super().__init__(DirFiles(path))

    def append(self, base_ref: str | None, tag: str, blob: CommittedLayer, *,
               created_by: str, created: str, comment: str = "") -> dict:
        """Add image ``tag`` = base + the layer; the layer's blob must already be stored."""
        layer = Descriptor.decode({"mediaType": blob.media_type, "digest": blob.digest,
                                   "size": blob.size}, "committed layer")
        return self.append_layer(base_ref, tag, layer, blob.diff_id, created_by=created_by,
                                 created=created, comment=comment)
