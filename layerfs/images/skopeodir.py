"""containers-image ``dir:`` transport, as written by ``skopeo copy ... dir:PATH`` (FORMATS.md 3).

``manifest.json`` (one OCI or Docker schema 2 manifest) and every blob named
by its bare hex digest.
"""

from __future__ import annotations

import hashlib

from ..errors import ImageError
from ..oci.decode import parse_json
from ..oci.model import ImageManifest
from ..oci.resolve import Document, Resolved, with_config
from ..unpack.digests import parse_digest
from .files import ImageFiles
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
    raw = files.read_file("manifest.json", "manifest.json")
    document = Document(raw, "", "sha256:" + hashlib.sha256(raw).hexdigest(), "manifest.json")
    manifest = parse_json(raw, files.where, "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise ImageError(f"{files.where}: manifest.json is not a schema 2 image manifest")
    if "manifests" in manifest:
        raise ImageError(f"{files.where}: manifest.json is a manifest list; copy one "
                         "platform (skopeo copy without --all)")
    decoded = ImageManifest.decode(manifest, f"{files.where}: manifest.json")
    config_name = parse_digest(decoded.config.digest, "config")[1]
    config_data = files.read_file(config_name, "image config")
    image = with_config(Resolved(decoded, document),
                        Document(config_data, decoded.config.media_type, decoded.config.digest,
                                 config_name), files.where)
    layers = blob_layers(files, image, lambda digest: parse_digest(digest, "layer")[1])
    return ImagePlan(layers=layers, name=files.path.name, form="skopeo-dir",
                     config=dict(image.config.raw), source=str(files.path), manifest=raw,
                     digest=document.digest)
