"""An image opened for mounting: its layers as directories, bottom first, and its config.

Every form's reader ends in one :class:`Image` (through
:func:`layerfs.images.plan.materialize` for tar layers); a registry image
(:mod:`layerfs.registry`) ends in one too, so the mount plan
(:mod:`layerfs.mountplan`) treats them alike.
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
