"""Choosing one image of a store or archive by reference.

A reference is a name with or without tag (``nginx``, ``nginx:1.25``,
``docker.io/library/nginx:latest``, or a bare OCI tag ``latest``), a full or
short image ID (``3f5a...``, ``sha256:3f5a...``), or a digest
(``name@sha256:...`` or ``sha256:...`` of a manifest). Names are compared in
Docker's normalised form. No reference is fine when there is one image; an
unknown or ambiguous one fails with the list of images available.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass, field
from typing import Generic, Iterator, TypeVar

from ..errors import ImageError

T = TypeVar("T")
_HEX = re.compile(r"^(sha256:)?([0-9a-f]{4,64})$")
DEFAULT_REGISTRY = "docker.io"


@dataclass
class Candidate(Generic[T]):
    item: T
    image_id: str = ""
    """sha256:<hex> of the config, when known."""
    names: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    """Manifest digests (sha256:<hex>) this image is known by."""

    def describe(self) -> str:
        label = ", ".join(self.names) if self.names else "<untagged>"
        if self.image_id:
            label += f" ({self.image_id.partition(':')[2][:12]})"
        return label


def normalize(name: str) -> str:
    """Docker's normal form: registry/repository:tag (or @digest)."""
    if "@" in name:
        repo, _, digest = name.partition("@")
        return f"{_normal_repo(repo)}@{digest}"
    repo, tag = name, "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = name.rpartition(":")
    return f"{_normal_repo(repo)}:{tag}"


def _normal_repo(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if len(parts) == 1:
            parts = ["library"] + parts
        parts = [DEFAULT_REGISTRY] + parts
    return "/".join(parts)


def _matches(candidate: Candidate, ref: str) -> bool:
    hex_match = _HEX.match(ref)
    if hex_match:
        ids = [candidate.image_id] + candidate.digests
        if any(i.partition(":")[2].startswith(hex_match.group(2)) for i in ids if i):
            return True
        if hex_match.group(1):
            return False  # sha256:... is an ID or digest, never a name
    if ref in candidate.names:
        return True
    if "@" in ref and ref.partition("@")[2] in candidate.digests:
        return True
    return normalize(ref) in {normalize(name) for name in candidate.names}


class Listed(Exception):
    """Raised by :func:`select` inside :func:`listing`: the images a store or archive
    holds (``layerfs images``), found by the same reader that would choose one."""

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__(f"{len(candidates)} images")
        self.candidates = candidates


_listing_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("listing", default=False)


@contextlib.contextmanager
def listing() -> Iterator[None]:
    """Make :func:`select` raise :class:`Listed` with every candidate instead of choosing."""
    token = _listing_mode.set(True)
    try:
        yield
    finally:
        _listing_mode.reset(token)


def select(candidates: list[Candidate[T]], ref: str | None, where: str) -> Candidate[T]:
    if _listing_mode.get():
        raise Listed(candidates)
    if not candidates:
        raise ImageError(f"{where}: holds no images")
    if ref is None:
        if len(candidates) == 1:
            return candidates[0]
        raise ImageError(f"{where}: holds {len(candidates)} images, name one "
                         f"({where}:NAME:TAG or --image REF); available: {_listing(candidates)}")
    found = [c for c in candidates if _matches(c, ref)]
    if not found and not _has_registry(ref):  # "app:1" for "localhost/app:1", as podman does
        found = [c for c in candidates
                 if _without_registry(ref) in {_without_registry(n) for n in c.names}]
    if not found and _is_bare_tag(ref):  # "v1" for "registry/repo:v1", if unique
        found = [c for c in candidates if any(n.rpartition(":")[2] == ref and "/" in n
                                              for n in c.names)]
    distinct = {id(c.item): c for c in found}
    if len(distinct) == 1:
        return found[0]
    if not found:
        raise ImageError(f"{where}: no image '{ref}'; available: {_listing(candidates)}")
    raise ImageError(f"{where}: '{ref}' is ambiguous, it matches: {_listing(found)}")


def _listing(candidates: list[Candidate]) -> str:
    return "; ".join(c.describe() for c in candidates)


def _is_bare_tag(name: str) -> bool:
    return "/" not in name and ":" not in name and "@" not in name


def _has_registry(ref: str) -> bool:
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _without_registry(name: str) -> str:
    if "@" in name or _HEX.match(name):
        return ""
    path = normalize(name).split("/", 1)[1]
    return path[len("library/"):] if path.startswith("library/") else path
