"""From a reference to one image: index -> the platform's manifest -> config and layers.

The walk is :mod:`layerfs.oci.resolve`'s, the same as for local OCI layouts;
this module fetches for it (manifests by digest, the config as a small blob:
every document verified against the digest that names it) and adds what a
registry needs: every layer must have a size (downloads are checked against
it) and none may be a foreign layer (a registry does not serve those).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..oci.mediatypes import FOREIGN_LAYER_TYPES
from ..oci.model import Descriptor
from ..oci.platform import host_platform
from ..oci.resolve import Document, Resolved, decode_manifest, follow, with_config
from .client import Manifest, RegistryClient
from .errors import RegistryError
from .reference import Reference

MAX_CONFIG = 32 << 20


@dataclass
class RemoteLayer:
    position: int
    descriptor: Descriptor
    diff_id: str
    created_by: str

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return int(self.descriptor.size or 0)

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.descriptor.annotations


@dataclass
class RemoteImage:
    reference: Reference
    manifest: Manifest
    config_descriptor: Descriptor
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

    def fetch(descriptor: Descriptor, what: str) -> Document:
        return client.manifest(descriptor.digest)

    found = follow(client.manifest(ref.manifest_ref), fetch, wanted, str(ref))
    config = found.manifest.config
    config_data = client.blob_bytes(config.digest, _size(config, ref), MAX_CONFIG,
                                    f"{ref}: config {config.digest}")
    return assemble(ref, found.document, config_data, found.index, wanted)


def assemble(ref: Reference, manifest: Manifest, config_data: bytes,
             index: Manifest | None = None, platform: str = "") -> RemoteImage:
    """The image a (verified) manifest and its config bytes describe: from the registry,
    or from the documents kept in the cache (:mod:`.offline`)."""
    found = Resolved(decode_manifest(manifest, str(ref)), manifest, index)
    config_descriptor = found.manifest.config
    image = with_config(found, Document(config_data, config_descriptor.media_type,
                                        config_descriptor.digest,
                                        f"config {config_descriptor.digest}"), f"{ref}")
    layers = []
    for position, descriptor in enumerate(image.manifest.layers):
        _size(descriptor, ref)
        if descriptor.media_type in FOREIGN_LAYER_TYPES:
            raise RegistryError(f"{ref}: layer {position + 1} is a foreign layer "
                                f"({descriptor.media_type}), which is not supported")
        layers.append(RemoteLayer(position, descriptor, image.config.diff_ids[position],
                                  image.config.created_by[position]))
    return RemoteImage(ref, manifest, config_descriptor, config_data, dict(image.config.raw),
                       layers, index, platform)


def _size(descriptor: Descriptor, ref: Reference) -> int:
    if descriptor.size is None:
        raise RegistryError(f"{ref}: descriptor {descriptor.digest} has no valid size")
    return descriptor.size
