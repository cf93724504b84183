"""Registry images without the registry: the manifest and config of every image pulled
are kept in the cache (``<cache>/manifests/``, one JSON file per reference and
platform), so that a pulled image mounts when the registry cannot be reached, as
docker and podman run a pulled image offline.

When the registry is asked is podman's ``--pull`` policy: ``always`` (it must
answer), ``newer`` (the default: ask it, and use the kept manifest when it cannot be
reached, saying so in one line on stderr; a reference by digest kept already is
not asked for at all, since its content cannot change), ``missing`` (use the kept
manifest without asking when there is one) and ``never`` (only the kept one).
The kept documents are verified against their digests each time they are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..oci.platform import host_platform
from ..unpack import LayerCache
from .client import Manifest, RegistryClient, digest_of
from .errors import RegistryError, TransientError, UnreachableError
from .reference import Reference
from .resolve import RemoteImage, assemble, resolve

PULL_POLICIES = ("always", "newer", "missing", "never")
DEFAULT_POLICY = "newer"
MANIFESTS_DIR = "manifests"

UNREACHABLE = (UnreachableError, TransientError)
"""The registry could not be reached (or kept failing): the cases the cache stands in for."""


def _path(cache: LayerCache, ref: Reference, platform: str) -> Path:
    name = f"{ref.registry}/{ref.repository}@{ref.digest}" if ref.digest else str(ref)
    key = hashlib.sha256(f"{name}\0{platform}".encode()).hexdigest()
    return cache.directory / MANIFESTS_DIR / f"{key}.json"


def remember(cache: LayerCache, image: RemoteImage) -> None:
    """Keep the image's manifest and config for :func:`recall` (after a complete pull),
    under the reference pulled and under its digests (the manifest's, the index's)."""
    ref = image.reference
    digests = [image.manifest.digest] + ([image.index.digest] if image.index else [])
    for named in [ref] + [Reference(ref.registry, ref.repository, None, d) for d in digests]:
        _keep(_path(cache, named, image.platform), image)


def _keep(path: Path, image: RemoteImage) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"reference": str(image.reference), "platform": image.platform,
              "manifest": image.manifest.data.decode("utf-8", "surrogateescape"),
              "media_type": image.manifest.media_type, "digest": image.manifest.digest,
              "config": image.config_data.decode("utf-8", "surrogateescape")}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def recall(cache: LayerCache, ref: Reference, platform: str) -> RemoteImage | None:
    """The image as last pulled, from the kept documents; None when none are kept."""
    path = _path(cache, ref, platform)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: kept manifest of {ref} unreadable ({exc})") from None
    data = record["manifest"].encode("utf-8", "surrogateescape")
    config = record["config"].encode("utf-8", "surrogateescape")
    digest = str(record["digest"])
    if digest_of(data, digest.partition(":")[0]) != digest:
        raise RegistryError(f"{path}: kept manifest of {ref} does not match its digest")
    image = assemble(ref, Manifest(data, str(record["media_type"]), digest), config,
                     platform=platform)
    wanted = image.config_descriptor.digest
    if digest_of(config, wanted.partition(":")[0] or "sha256") != wanted:
        raise RegistryError(f"{path}: kept config of {ref} does not match its digest")
    return image


def resolve_with_policy(client: RegistryClient, cache: LayerCache, platform: str | None,
                        policy: str = DEFAULT_POLICY) -> RemoteImage:
    """The image ``client.ref`` names, from the registry or the kept documents, as
    ``policy`` says."""
    ref = client.ref
    wanted = platform or host_platform()
    if policy not in PULL_POLICIES:
        raise RegistryError(f"--pull={policy}: expected one of {', '.join(PULL_POLICIES)}")
    if policy in ("never", "missing") or (policy == "newer" and ref.digest):
        kept = recall(cache, ref, wanted)
        if kept is not None:
            return kept
        if policy == "never":
            raise RegistryError(f"{ref}: not pulled for {wanted} (--pull=never uses only the "
                                "cache: layerfs pull it first)")
    try:
        return resolve(client, platform)
    except UNREACHABLE as exc:
        if policy == "always":
            raise
        kept = recall(cache, ref, wanted)
        if kept is None:
            raise
        print(f"layerfs: {ref}: the registry cannot be reached ({exc}); using the cached "
              f"manifest {kept.manifest.digest}", file=sys.stderr)
        return kept
