"""A Docker data root with the overlay2 graph driver, used in place (FORMATS.md section 5).

``image/overlay2/repositories.json`` -> image ID -> ``imagedb`` config ->
``rootfs.diff_ids`` -> ChainIDs -> ``layerdb/sha256/<chainID>/cache-id`` ->
``overlay2/<cache-id>/diff``. Layer directories are overlay-native
(0/0 char device whiteouts, ``trusted.overlay.opaque``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ImageError
from ..layer import LayerFacts
from ..oci.config import diff_ids_of, layer_history
from ..unpack.digests import chain_ids, hex_of
from .files import ImageFiles
from .plan import ImagePlan, LayerSource, layer_label
from .reference import Candidate, select

DRIVER = "overlay2"


def is_docker_root(files: ImageFiles) -> bool:
    return not files.is_archive and files.exists(f"image/{DRIVER}/repositories.json") \
        and files.is_dir(DRIVER)


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ImageError(f"{path}: {what} is missing") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied (a Docker data root is readable by "
                         "root only)") from None
    except ValueError as exc:
        raise ImageError(f"{path}: {what} is not valid JSON ({exc})") from None


def _candidates(root: Path) -> list[Candidate[str]]:
    image_dir = root / "image" / DRIVER
    data = _read_json(image_dir / "repositories.json", "repositories.json")
    repositories = data.get("Repositories") if isinstance(data, dict) else None
    by_id: dict[str, Candidate[str]] = {}
    for refs in (repositories or {}).values():
        for ref, image_id in (refs or {}).items():
            candidate = by_id.setdefault(image_id, Candidate(image_id, image_id=image_id))
            if "@" in ref:
                candidate.digests.append(ref.partition("@")[2])
                candidate.names.append(ref)
            else:
                candidate.names.append(ref)
    content = image_dir / "imagedb" / "content" / "sha256"
    try:
        untagged = sorted(os.listdir(content))
    except OSError:
        untagged = []
    for hex_id in untagged:
        by_id.setdefault(f"sha256:{hex_id}", Candidate(f"sha256:{hex_id}",
                                                       image_id=f"sha256:{hex_id}"))
    for candidate in by_id.values():
        candidate.names = [n for n in candidate.names if "@" not in n] or candidate.names
    return list(by_id.values())


def image_count(root: Path) -> int:
    """How many images (tagged or not) the overlay2 store of a Docker root holds."""
    return len(_candidates(root))


def read_docker_root(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    root = files.path
    chosen = select(_candidates(root), ref, str(root))
    image_dir = root / "image" / DRIVER
    config = _read_json(image_dir / "imagedb" / "content" / "sha256" / hex_of(chosen.item),
                        f"image config of {chosen.item}")
    if not isinstance(config, dict):
        raise ImageError(f"{root}: image config of {chosen.item} is not an object")
    diff_ids = diff_ids_of(config, str(root))
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (diff_id, chain) in enumerate(zip(diff_ids, chain_ids(diff_ids), strict=True)):
        layerdb = image_dir / "layerdb" / "sha256" / hex_of(chain)
        try:
            cache_id = (layerdb / "cache-id").read_text().strip()
        except FileNotFoundError:
            raise ImageError(f"{root}: layer {position + 1} (chain {chain}) is not in the "
                             "layer database") from None
        except PermissionError:
            raise ImageError(f"{layerdb}: permission denied") from None
        diff = root / DRIVER / cache_id / "diff"
        if not diff.is_dir():
            raise ImageError(f"{diff}: layer {position + 1} directory is missing")
        try:
            diff_size: int | None = int((layerdb / "size").read_text())
        except (OSError, ValueError):
            diff_size = None
        facts = LayerFacts(cache_id=cache_id, store_path=str(diff), diff_size=diff_size)
        layers.append(LayerSource(label=layer_label(position, diff_id), diff_id=diff_id,
                                  created_by=history[position], directory=str(diff),
                                  chain_id=chain, facts=facts))
    name = chosen.names[0] if chosen.names else chosen.item
    return ImagePlan(layers=layers, name=name, form="docker-root", config=config,
                     source=str(root))
