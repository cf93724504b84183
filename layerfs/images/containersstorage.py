"""containers-storage (podman, buildah, CRI-O), overlay and vfs drivers, used in place
(FORMATS.md section 6).

``<driver>-images/images.json`` names each image's top layer;
``<driver>-layers/layers.json`` links layers to their parents. Overlay layer
dirs are ``overlay/<id>/diff`` (overlay-native, or AUFS-style ``.wh.`` files
for fuse-overlayfs stores; the scanner reads both). A vfs layer dir is a full
copy of the image, so the top one alone is mounted.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

from ..errors import ImageError
from ..layer import LayerFacts
from ..oci.config import layer_history
from .files import ImageFiles
from .plan import ImagePlan, LayerSource, layer_label
from .reference import Candidate, select

_BIG_DATA_PLAIN = re.compile(r"^[.0-9a-z]+$")


def is_containers_storage(files: ImageFiles) -> bool:
    return not files.is_archive and files.exists("overlay-images/images.json") \
        and files.exists("overlay-layers/layers.json")


def is_containers_storage_vfs(files: ImageFiles) -> bool:
    return not files.is_archive and files.exists("vfs-images/images.json")


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ImageError(f"{path}: {what} is missing") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except ValueError as exc:
        raise ImageError(f"{path}: {what} is not valid JSON ({exc})") from None


def big_data_name(key: str) -> str:
    """containers/storage makeBigDataBaseName: plain keys verbatim, others '=' + base64."""
    if _BIG_DATA_PLAIN.match(key):
        return key
    return "=" + base64.b64encode(key.encode()).decode()


def read_containers_storage(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    return _read(files.path, ref, "overlay", "containers-storage")


def read_containers_storage_vfs(files: ImageFiles, ref: str | None,
                                platform: str | None) -> ImagePlan:
    return _read(files.path, ref, "vfs", "containers-storage-vfs")


def _read(root: Path, ref: str | None, driver: str, form: str) -> ImagePlan:
    images = _read_json(root / f"{driver}-images" / "images.json", "images.json")
    layers_list = _read_json(root / f"{driver}-layers" / "layers.json", "layers.json")
    if not isinstance(images, list) or not isinstance(layers_list, list):
        raise ImageError(f"{root}: images.json / layers.json are not lists")
    candidates = [Candidate(image, image_id=f"sha256:{image.get('id', '')}",
                            names=list(image.get("names") or []),
                            digests=[d for d in [image.get("digest")] + list(image.get("digests") or [])
                                     if d])
                  for image in images if isinstance(image, dict)]
    chosen = select(candidates, ref, str(root))
    image = chosen.item
    by_id = {layer.get("id"): layer for layer in layers_list if isinstance(layer, dict)}
    chain = []
    current = image.get("layer")
    while current:
        layer = by_id.get(current)
        if layer is None or len(chain) > len(by_id):
            raise ImageError(f"{root}: layer {current} of image {image.get('id')} is not in "
                             "layers.json")
        chain.append(layer)
        current = layer.get("parent")
    chain.reverse()
    config = _config(root, driver, image)
    history = layer_history(config, len(chain))
    sources = []
    for position, layer in enumerate(chain):
        diff_id = layer.get("diff-digest", "")
        directory = root / driver / layer["id"] / "diff" if driver == "overlay" \
            else root / "vfs" / "dir" / layer["id"]
        facts = LayerFacts(store_layer_id=layer["id"], store_path=str(directory),
                           blob_digest=layer.get("compressed-diff-digest", ""),
                           blob_size=layer.get("compressed-size"),
                           diff_size=layer.get("diff-size"))
        sources.append(LayerSource(label=layer_label(position, diff_id), diff_id=diff_id,
                                   created_by=history[position], directory=str(directory),
                                   facts=facts))
    if driver == "vfs" and sources:
        # Each vfs layer is a full copy of the ones below: the top one alone is the image.
        top = sources[-1]
        sources = [replace(top, facts=replace(top.facts, full_copy_of_layers=len(sources)))]
    for source in sources:
        if not Path(source.directory or "").is_dir():
            raise ImageError(f"{source.directory}: layer {source.label} directory is missing")
    name = chosen.names[0] if chosen.names else chosen.image_id
    manifest = _manifest(root, driver, image)
    return ImagePlan(layers=sources, name=name, form=form, config=config, source=str(root),
                     manifest=manifest, digest=str(image.get("digest", "")) if manifest else "")


def _config(root: Path, driver: str, image: dict) -> dict:
    path = root / f"{driver}-images" / image.get("id", "") / big_data_name(f"sha256:{image.get('id')}")
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _manifest(root: Path, driver: str, image: dict) -> bytes:
    """The manifest the image was pulled with (podman's big-data item "manifest"), or b""."""
    try:
        return (root / f"{driver}-images" / image.get("id", "") / "manifest").read_bytes()
    except OSError:
        return b""
