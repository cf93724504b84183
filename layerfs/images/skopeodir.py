"""containers-image ``dir:`` transport, as written by ``skopeo copy ... dir:PATH`` (FORMATS.md 3).

``manifest.json`` (one OCI or Docker schema 2 manifest) and every blob named
by its bare hex digest.
"""

from __future__ import annotations

import hashlib

from ..errors import ImageError
from ..unpack.digests import parse_digest
from .files import ImageFiles
from .manifests import layer_diff_ids, manifest_parts
from .oci import blob_layers
from .plan import ImagePlan

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
    config_descriptor, descriptors = manifest_parts(manifest, f"{files.where}: manifest.json")
    config = files.read_json(parse_digest(config_descriptor["digest"], "config")[1],
                             "image config")
    if not isinstance(config, dict):
        raise ImageError(f"{files.where}: image config is not a JSON object")
    diff_ids = layer_diff_ids(config, descriptors, files.where)
    layers = blob_layers(files, descriptors, diff_ids, config,
                         lambda digest: parse_digest(digest, "layer")[1])
    raw = files.read_bytes("manifest.json")
    return ImagePlan(layers=layers, name=files.path.name, form="skopeo-dir", config=config,
                     source=str(files.path), manifest=raw,
                     digest="sha256:" + hashlib.sha256(raw).hexdigest())
