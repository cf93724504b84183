"""Image sources: each form an image sits in on disk becomes one ordered list of layers.

A source module knows one form (extracted layer dirs, OCI layout, docker
archive, Docker data root, containers-storage, ...) and returns an
:class:`Image`. :func:`open_image` detects the form (FORMATS.md section 0)
or takes the one forced with ``--format``. Adding a form touches its own
module and the table in :mod:`layerfs.images.detect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..layer import Layer

if TYPE_CHECKING:
    from ..deferred import PendingLayers


@dataclass
class Image:
    layers: list[Layer]
    """Bottom first."""

    name: str = ""
    form: str = ""
    config: dict = field(default_factory=dict)

    pending: "PendingLayers | None" = None
    """Layers still arriving (a lazy registry mount's gzip layers): ``layers`` names
    every layer, but only ``pending.wait()`` returns them all present."""


from .detect import FORMS, open_image, read_image  # noqa: E402

__all__ = ["FORMS", "Image", "open_image", "read_image"]
