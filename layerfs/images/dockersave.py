"""``docker save`` archives with ``manifest.json`` (FORMATS.md 4.2, 4.3) and skopeo /
go-containerregistry ``docker-archive`` variants.

Docker >= 25 writes an OCI layout plus ``manifest.json``: the OCI index is
preferred, ``manifest.json`` is the fallback (``"manifests": null``).
Layers are found by the paths in ``manifest.json`` (possibly symlinks inside
the archive, possibly gzip despite the ``.tar`` name) and matched to the
config's DiffIDs by position.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import ImageError
from ..oci.config import diff_ids_of, layer_history
from ..oci.decode import need_string, strings
from .files import ImageFiles
from .oci import is_oci_layout, read_oci, tar_layer_source, usable_manifests
from .plan import ImagePlan
from .reference import Candidate, select

_BLOB_PATH = re.compile(r"(?:^|/)(?:sha256[:/])?([0-9a-f]{64})(?:\.tar(?:\.gz)?|\.json)?$")


def is_docker_save_oci(files: ImageFiles) -> bool:
    return is_oci_layout(files) and files.exists("manifest.json")


def is_docker_save(files: ImageFiles) -> bool:
    if not files.exists("manifest.json") or files.is_dir("manifest.json"):
        return False
    try:
        return files.read_bytes("manifest.json").lstrip().startswith(b"[")
    except OSError:
        return False


def read_docker_save_oci(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    if usable_manifests(files):
        return read_oci(files, ref, platform, form="docker-save-oci")
    return read_docker_save(files, ref, platform, form="docker-save-oci")


def read_docker_save(files: ImageFiles, ref: str | None, platform: str | None,
                     form: str = "docker-save") -> ImagePlan:
    entries = files.read_json("manifest.json", "manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ImageError(f"{files.where}: manifest.json is not a list of images")
    candidates = [_candidate(files, entry) for entry in entries]
    chosen = select(candidates, ref, files.where)
    entry = chosen.item
    config = files.read_json(entry["Config"], "image config")
    if not isinstance(config, dict):
        raise ImageError(f"{files.where}: image config {entry.get('Config')} is not an object")
    diff_ids = diff_ids_of(config, files.where)
    paths = strings(entry.get("Layers"), f"{files.where}: manifest.json", "'Layers'")
    if len(paths) != len(diff_ids):
        raise ImageError(f"{files.where}: manifest.json lists {len(paths)} layers, "
                         f"the config {len(diff_ids)} DiffIDs")
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (path, diff_id) in enumerate(zip(paths, diff_ids, strict=True)):
        if not files.exists(path):
            raise ImageError(f"{files.where}: layer {position + 1} ({path}) is missing")
        match = _BLOB_PATH.search(path)
        # Docker >= 25 names uncompressed layer blobs by their digest; others are unnamed.
        blob_digest = f"sha256:{match.group(1)}" if match and "blobs/sha256/" in path else ""
        layers.append(tar_layer_source(files, path, position, blob_digest, diff_id,
                                       history[position]))
    name = chosen.names[0] if chosen.names else chosen.image_id
    return ImagePlan(layers=layers, name=name, form=form, config=config, source=str(files.path))


def _candidate(files: ImageFiles, entry: dict) -> Candidate[dict]:
    where = f"{files.where}: manifest.json"
    config_path = need_string(entry.get("Config"), where, "'Config'")
    strings(entry.get("Layers"), where, "'Layers'")
    names = strings(entry.get("RepoTags"), where, "'RepoTags'")
    try:
        image_id = "sha256:" + hashlib.sha256(files.read_bytes(config_path)).hexdigest()
    except OSError:
        raise ImageError(f"{files.where}: image config {config_path} is missing") from None
    return Candidate(entry, image_id=image_id, names=names)
