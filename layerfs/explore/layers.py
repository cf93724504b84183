"""Naming layers for the explore commands: how a layer is shown and how the user picks one."""

from __future__ import annotations

import argparse

from ..cliopts import image_request
from ..errors import UsageError
from ..images import Image
from ..index import PathIndex
from ..layer import Layer
from ..mountplan import open_image
from ..unpack.digests import short


def open_for(args: argparse.Namespace, spec: str | None = None) -> Image:
    """The image named on the command line (or ``spec``, a second image: then
    ``--format`` and ``--image`` do not apply to it), as directory layers: tar layers
    are unpacked once into the layer cache, as ``mount`` does (:mod:`layerfs.mountplan`)."""
    return open_image(image_request(args, spec))


def layer_ref(image: Image | PathIndex, position: int) -> dict:
    """JSON for one layer: ``{"index": 1-based, "label", "diff_id", "chain_id", "created_by"}``."""
    layer = image.layers[position]
    return {"index": position + 1, "label": layer.label, "diff_id": layer.diff_id,
            "chain_id": layer.chain_id, "created_by": layer.created_by}


def layer_name(layer: Layer, position: int) -> str:
    """``3 (73a97638ab12)``: the 1-based index and the short DiffID (else chainID, label)."""
    digest = short(layer.diff_id) or short(layer.chain_id)
    if digest:
        return f"{position + 1} ({digest})"
    return f"{position + 1} ({layer.label})" if layer.label and layer.label != str(position + 1) \
        else str(position + 1)


def _matches(layer: Layer, spec: str) -> bool:
    wanted = spec.lower()
    if layer.label and spec == layer.label:
        return True
    if len(wanted.partition(":")[2] or wanted) < 4:
        return False
    for digest in (layer.diff_id, layer.chain_id):
        if digest and (digest.startswith(wanted) or digest.partition(":")[2].startswith(wanted)):
            return True
    return False


def find_layer(image: Image, spec: str) -> int | None:
    """The position of the layer ``spec`` names, or None when it names none.

    ``spec`` is a 1-based index (negative counts from the top: -1 is the top layer), a
    DiffID or chainID prefix (``sha256:`` optional, 4 hex digits at least) or a label.
    """
    count = len(image.layers)
    try:
        number = int(spec)
    except ValueError:
        number = None
    if number is not None and not spec.lower().startswith("0x"):
        if 1 <= number <= count:
            return number - 1
        if -count <= number <= -1:
            return count + number
        if len(spec) < 4:
            raise UsageError(f"layer {spec}: the image has layers 1 to {count}")
    found = [position for position, layer in enumerate(image.layers) if _matches(layer, spec)]
    if len(found) > 1:
        raise UsageError(f"layer {spec}: ambiguous, matches layers "
                         f"{', '.join(str(p + 1) for p in found)}")
    return found[0] if found else None


def select_layer(image: Image, spec: str) -> int:
    position = find_layer(image, spec)
    if position is None:
        names = ", ".join(layer_name(layer, p) for p, layer in enumerate(image.layers))
        raise UsageError(f"layer {spec}: no such layer (layers: {names})")
    return position
