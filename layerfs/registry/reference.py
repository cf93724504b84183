"""Image references in a registry: ``[docker://|oci://]REGISTRY/REPO[:TAG][@DIGEST]``.

The grammar is distribution's (``reference/reference.go``): the first path
component is a registry when it has a ``.`` or ``:`` or is ``localhost``;
otherwise the image is on Docker Hub (``docker.io``, served from
``registry-1.docker.io``) and a one-component name gains ``library/``.
Without tag or digest the tag is ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

SCHEMES = ("docker://", "oci://")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io",
                                "registry.hub.docker.com"})
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    registry: str
    """As written, normalised (``docker.io`` for Docker Hub): the key for credentials."""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the registry API answers (``host[:port]``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_ref(self) -> str:
        """What to ask the manifests endpoint for: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_remote(spec: str) -> bool:
    """Whether an image spec names a registry image (``docker://`` or ``oci://``)."""
    return spec.startswith(SCHEMES)


def strip_scheme(spec: str) -> str:
    for scheme in SCHEMES:
        if spec.startswith(scheme):
            return spec[len(scheme):]
    return spec


def parse_reference(spec: str) -> Reference:
    """Parse a registry image reference; a malformed one is a usage error naming it."""
    text = strip_scheme(spec.strip())
    if not text:
        raise UsageError(f"'{spec}': empty image reference")
    name, digest = text, None
    if "@" in text:
        name, _, digest = text.partition("@")
        if not _DIGEST.match(digest):
            raise UsageError(f"'{spec}': '{digest}' is not a digest (expected sha256:<hex>)")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            raise UsageError(f"'{spec}': '{tag}' is not a valid tag")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0].startswith("[")):
        registry, path = parts[0], parts[1:]
        if not _HOST.match(registry):
            raise UsageError(f"'{spec}': '{registry}' is not a registry host")
    else:
        registry, path = DOCKER_HUB, parts
    if registry.lower() in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _COMPONENT.match(component):
            raise UsageError(f"'{spec}': '{component}' is not a valid repository name component "
                             "(lowercase letters, digits, and . _ - between them)")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository="/".join(path), tag=tag, digest=digest)
