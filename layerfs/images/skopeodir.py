"""containers-image ``dir:`` transport, as written by ``skopeo copy ... dir:PATH`` (FORMATS.md 3).

``manifest.json`` (one OCI or Docker schema 2 manifest) and every blob named
by its bare hex digest.
"""

from __future__ import annotations

from ..errors import ImageError
from ..unpack.digests import parse_digest
from .config import diff_ids_of, layer_history
from .files import ImageFiles
from .oci import tar_layer_source
from .plan import ImagePlan
from .shapes import descriptor as checked_descriptor
from .shapes import need_list, need_object

VERSION_PREFIX = b"Directory Transport Version"


def is_skopeo_dir(files: ImageFiles) -> bool:
    if not (files.exists("version") and files.exists("manifest.json")):
        return False
    try:
        return files.read_bytes("version").startswith(VERSION_PREFIX)
    except OSError:
        return False


def read_skopeo_dir(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    if ref is not None:
        raise ImageError(f"{files.where}: a dir: image holds one image; drop ':{ref}'")
    manifest = files.read_json("manifest.json", "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise ImageError(f"{files.where}: manifest.json is not a schema 2 image manifest")
    if "manifests" in manifest:
        raise ImageError(f"{files.where}: manifest.json is a manifest list; copy one "
                         "platform (skopeo copy without --all)")
    where = f"{files.where}: manifest.json"
    config_digest = checked_descriptor(need_object(manifest.get("config"), where, "'config'"),
                               f"{where}: config")["digest"]
    config = files.read_json(parse_digest(config_digest, "config")[1], "image config")
    if not isinstance(config, dict):
        raise ImageError(f"{files.where}: image config is not a JSON object")
    descriptors = [checked_descriptor(need_object(layer, where, f"layer {position + 1}"),
                              f"{where}: layer {position + 1}")
                   for position, layer in enumerate(need_list(manifest.get("layers"), where,
                                                              "'layers'"))]
    diff_ids = diff_ids_of(config, files.where)
    if len(diff_ids) != len(descriptors):
        raise ImageError(f"{files.where}: manifest lists {len(descriptors)} layers, "
                         f"config {len(diff_ids)} DiffIDs")
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (descriptor, diff_id) in enumerate(zip(descriptors, diff_ids, strict=True)):
        digest = str(descriptor.get("digest", ""))
        layers.append(tar_layer_source(files, parse_digest(digest, "layer")[1], position,
                                       digest, diff_id, history[position],
                                       descriptor.get("size"), descriptor.get("mediaType", "")))
    return ImagePlan(layers=layers, name=files.path.name, form="skopeo-dir", config=config,
                     source=str(files.path))
