"""From a reference to one image: index -> the platform's manifest -> config and layers.

Indexes (OCI and Docker manifest lists) are followed, nested ones too, choosing
the entry for ``--platform`` (default: this host's) with the same matching rules
as local OCI layouts. Every document is verified against the digest that names
it: the manifest against the reference's digest or the index entry, the config
against the manifest's descriptor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..images.config import diff_ids_of, layer_history
from ..images.platform import describe, host_platform, matches
from ..unpack.digests import parse_digest
from .client import INDEX_TYPES, MANIFEST_TYPES, Manifest, RegistryClient
from .errors import RegistryError
from .reference import Reference

MAX_CONFIG = 32 << 20
_MAX_NESTING = 4
FOREIGN_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


@dataclass
class RemoteLayer:
    position: int
    descriptor: dict
    diff_id: str
    created_by: str

    @property
    def digest(self) -> str:
        return str(self.descriptor["digest"])

    @property
    def size(self) -> int:
        return int(self.descriptor["size"])

    @property
    def media_type(self) -> str:
        return str(self.descriptor.get("mediaType", ""))

    @property
    def annotations(self) -> dict:
        value = self.descriptor.get("annotations")
        return value if isinstance(value, dict) else {}


@dataclass
class RemoteImage:
    reference: Reference
    manifest: Manifest
    config_descriptor: dict
    config_data: bytes
    config: dict
    layers: list[RemoteLayer]
    index: Manifest | None = None
    platform: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The reference as given (its tag), for messages and the cache's records."""
        return str(self.reference)


def resolve(client: RegistryClient, platform: str | None = None) -> RemoteImage:
    ref = client.ref
    wanted = platform or host_platform()
    document_ref = ref.manifest_ref
    manifest = client.manifest(document_ref)
    index: Manifest | None = None
    for _ in range(_MAX_NESTING):
        if manifest.media_type not in INDEX_TYPES and \
                "manifests" not in manifest.json(f"{ref}: manifest"):
            break
        index = index or manifest
        descriptor = _pick(manifest.json(f"{ref}: index"), wanted, f"{ref}: index "
                           f"{manifest.digest}")
        digest = str(descriptor.get("digest", ""))
        parse_digest(digest, f"{ref}: index entry")
        manifest = client.manifest(digest)
    else:
        raise RegistryError(f"{ref}: image indexes nested too deeply")
    config_descriptor = _config_descriptor(ref, manifest)
    config_digest = str(config_descriptor.get("digest", ""))
    config_data = client.blob_bytes(config_digest, _size(config_descriptor, ref), MAX_CONFIG,
                                    f"{ref}: config {config_digest}")
    return assemble(ref, manifest, config_data, index, wanted)


def _config_descriptor(ref: Reference, manifest: Manifest) -> dict:
    if manifest.media_type not in MANIFEST_TYPES and manifest.media_type:
        raise RegistryError(f"{ref}: unsupported manifest type {manifest.media_type}")
    document = manifest.json(f"{ref}: manifest {manifest.digest}")
    config_descriptor = document.get("config")
    if not isinstance(config_descriptor, dict) or not isinstance(document.get("layers"), list):
        raise RegistryError(f"{ref}: manifest {manifest.digest} has no config or layers")
    return config_descriptor


def assemble(ref: Reference, manifest: Manifest, config_data: bytes,
             index: Manifest | None = None, platform: str = "") -> RemoteImage:
    """The image a (verified) manifest and its config bytes describe: from the registry,
    or from the documents kept in the cache (:mod:`.offline`)."""
    config_descriptor = _config_descriptor(ref, manifest)
    layer_descriptors = manifest.json(f"{ref}: manifest {manifest.digest}")["layers"]
    config_digest = str(config_descriptor.get("digest", ""))
    try:
        config = json.loads(config_data)
    except ValueError as exc:
        raise RegistryError(f"{ref}: config {config_digest} is not valid JSON ({exc})") from None
    diff_ids = diff_ids_of(config, f"{ref}: config")
    if len(diff_ids) != len(layer_descriptors):
        raise RegistryError(f"{ref}: the manifest lists {len(layer_descriptors)} layers, "
                            f"the config {len(diff_ids)} DiffIDs")
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (descriptor, diff_id) in enumerate(zip(layer_descriptors, diff_ids, strict=True)):
        if not isinstance(descriptor, dict):
            raise RegistryError(f"{ref}: layer {position + 1} of the manifest is not a descriptor")
        parse_digest(str(descriptor.get("digest", "")), f"{ref}: layer {position + 1}")
        _size(descriptor, ref)
        if descriptor.get("mediaType") in FOREIGN_LAYER_TYPES:
            raise RegistryError(f"{ref}: layer {position + 1} is a foreign layer "
                                f"({descriptor['mediaType']}), which is not supported")
        layers.append(RemoteLayer(position, descriptor, diff_id, history[position]))
    return RemoteImage(ref, manifest, config_descriptor, config_data, config, layers, index,
                       platform)


def _size(descriptor: dict, ref: Reference) -> int:
    size = descriptor.get("size")
    if not isinstance(size, int) or size < 0:
        raise RegistryError(f"{ref}: descriptor {descriptor.get('digest')} has no valid size")
    return size


def _pick(index: dict, wanted: str, where: str) -> dict:
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)
               and m.get("mediaType") in INDEX_TYPES | MANIFEST_TYPES | {None}]
    if not entries:
        raise RegistryError(f"{where}: lists no image manifests")
    with_platform = [m for m in entries if isinstance(m.get("platform"), dict)]
    if not with_platform:
        return entries[0]
    for entry in with_platform:
        if matches(entry["platform"], wanted):
            return entry
    available = ", ".join(describe(m["platform"]) for m in with_platform
                          if m["platform"].get("os") != "unknown")
    raise RegistryError(f"{where}: no image for platform {wanted} (available: {available}; "
                        "choose with --platform)")
