"""Pre-1.10 ``docker save`` archives (FORMATS.md 4.1).

``repositories`` names the top layer id of each tag; each ``<id>/json`` names
its ``parent``; the layers are the chain from the base up. There are no
DiffIDs: they are computed while unpacking. A 0-byte ``layer.tar`` is an
empty layer (1.4.7).
"""

from __future__ import annotations

import re

from ..errors import ImageError
from ..oci.decode import need_object, need_string
from .files import ImageFiles
from .oci import tar_layer_source
from .plan import ImagePlan
from .reference import Candidate, select

_V1_ID = re.compile(r"^[0-9a-f]{64}$")
_MAX_DEPTH = 1000


def is_docker_legacy(files: ImageFiles) -> bool:
    if not files.exists("repositories") or files.exists("manifest.json"):
        return False
    return any(_V1_ID.match(name) and files.exists(f"{name}/json") for name in files.listdir(""))


def read_docker_legacy(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    repositories = files.read_json("repositories", "repositories")
    if not isinstance(repositories, dict):
        raise ImageError(f"{files.where}: repositories is not a JSON object")
    by_top: dict[str, list[str]] = {}
    where = f"{files.where}: repositories"
    for name, tags in repositories.items():
        for tag, top in need_object(tags or {}, where, f"'{name}'").items():
            by_top.setdefault(need_string(top, where, f"'{name}:{tag}'"), []).append(
                f"{name}:{tag}")
    candidates = [Candidate(top, image_id=f"sha256:{top}", names=names)
                  for top, names in by_top.items()]
    chosen = select(candidates, ref, files.where)
    chain = _chain(files, chosen.item)
    layers = []
    top_json: dict = {}
    for position, v1_id in enumerate(chain):
        info = files.read_json(f"{v1_id}/json", f"layer {v1_id} json")
        top_json = info if isinstance(info, dict) else {}
        layers.append(tar_layer_source(files, f"{v1_id}/layer.tar", position, "", "",
                                       _created_by(top_json), v1_id=v1_id))
    return ImagePlan(layers=layers, name=chosen.names[0], form="docker-save-legacy",
                     config=top_json, source=str(files.path))


def _chain(files: ImageFiles, top: str) -> list[str]:
    chain: list[str] = []
    current: str | None = top
    while current:
        if not _V1_ID.match(current):
            raise ImageError(f"{files.where}: layer id '{current}' is not 64 hex digits")
        if len(chain) > _MAX_DEPTH or current in chain:
            raise ImageError(f"{files.where}: the parent chain of {top} loops")
        if not files.exists(f"{current}/layer.tar"):
            raise ImageError(f"{files.where}: layer {current}/layer.tar is missing")
        chain.append(current)
        info = files.read_json(f"{current}/json", f"layer {current} json")
        parent = info.get("parent") if isinstance(info, dict) else None
        current = need_string(parent, f"{files.where}: {chain[-1]}/json", "'parent'") \
            if parent else None
    return list(reversed(chain))


def _created_by(info: dict) -> str:
    container_config = info.get("container_config") or {}
    command = container_config.get("Cmd") if isinstance(container_config, dict) else None
    return " ".join(str(part) for part in command) if isinstance(command, list) else ""
