"""Descriptors, indexes (manifest lists) and image manifests: typed, frozen, checked once.

OCI image-spec descriptor.md, image-index.md, manifest.md and Docker's
manifest v2 schema 2 and manifest list, which have the same shape. Each
``decode`` takes the parsed JSON object and returns the frozen value or raises
an :class:`~layerfs.errors.ImageError` naming the file and the field. What
layerfs does not use is not checked (``urls``, ``artifactType``, ``subject``)
but kept in ``raw``, so a document written back (a commit appended to a
layout) loses nothing.

Deliberately lenient where real images differ from the spec: ``"manifests":
null`` (Docker 25) is an empty index; an index entry that is not an object is
skipped; a ``platform`` that is not an object is no platform.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ImageError
from ..unpack.digests import parse_digest
from .decode import at, need_list, need_object, optional
from .decode import field as field_path
from .mediatypes import INDEX_TYPES, MANIFEST_TYPES
from .platform import Platform

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and size."""

    digest: str
    media_type: str = ""
    size: int | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    platform: Platform | None = None
    raw: Mapping[str, object] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @classmethod
    def decode(cls, value: object, where: str, path: str = "") -> Descriptor:
        """``where`` names the descriptor in messages (``IMAGE: index.json``,
        ``IMAGE: manifest D: layer 2``), ``path`` its place in the document."""
        item = need_object(value, where, "descriptor", path)
        digest = item.get("digest")
        if not isinstance(digest, str):
            raise ImageError(f"{where}: descriptor 'digest' is not a string"
                             f"{at(field_path(path, 'digest'))}")
        try:
            parse_digest(digest, f"{where}: descriptor")
        except ImageError as exc:
            raise ImageError(f"{exc}{at(field_path(path, 'digest'))}") from None
        media_type = optional(item, "mediaType", str, "a string", where, path)
        annotations = optional(item, "annotations", dict, "an object", where, path) or {}
        size = optional(item, "size", int, "a number", where, path)
        if size is not None and size < 0:  # type: ignore[operator]
            raise ImageError(f"{where}: descriptor 'size' is negative"
                             f"{at(field_path(path, 'size'))}")
        if not all(isinstance(v, str) for v in annotations.values()):  # type: ignore[union-attr]
            raise ImageError(f"{where}: descriptor annotations are not strings"
                             f"{at(field_path(path, 'annotations'))}")
        return cls(digest=digest, media_type=str(media_type or ""),
                   size=size,  # type: ignore[arg-type]
                   annotations=MappingProxyType(dict(annotations)),  # type: ignore[arg-type]
                   platform=Platform.decode(item.get("platform")),
                   raw=MappingProxyType(dict(item)))

    @classmethod
    def of(cls, data: bytes, media_type: str, digest: str, **extra: object) -> Descriptor:
        """The descriptor of ``data`` (whose digest is ``digest``), for writing."""
        raw = {"mediaType": media_type, "digest": digest, "size": len(data), **extra}
        return cls.decode(raw, "new descriptor")

    @property
    def leads_to_image(self) -> bool:
        """An index entry that names an image or another index (not an attestation, not
        an artifact); entries without a media type are taken to (old indexes omit it)."""
        return self.media_type in INDEX_TYPES | MANIFEST_TYPES or not self.media_type

    def to_json(self) -> dict:
        return dict(self.raw)


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index or a Docker manifest list (or an OCI layout's index.json)."""

    manifests: tuple[Descriptor, ...]
    media_type: str = ""
    raw: Mapping[str, object] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @classmethod
    def decode(cls, value: object, where: str) -> Index:
        document = need_object(value, where, "index")
        entries = document.get("manifests")
        if entries is None:  # Docker 25 wrote "manifests": null
            entries = []
        need_list(entries, where, "'manifests'", "manifests")
        manifests = tuple(Descriptor.decode(entry, where, field_path("manifests", position))
                          for position, entry in enumerate(entries)
                          if isinstance(entry, dict))
        media_type = document.get("mediaType")
        return cls(manifests, media_type if isinstance(media_type, str) else "",
                   MappingProxyType(dict(document)))

    def images(self) -> list[Descriptor]:
        """The entries that lead to images, in order."""
        return [entry for entry in self.manifests if entry.leads_to_image]


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """An image manifest: one config descriptor and the layers, bottom first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = ""
    raw: Mapping[str, object] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @classmethod
    def decode(cls, value: object, where: str) -> ImageManifest:
        """``where`` names the manifest: ``IMAGE: manifest sha256:...``."""
        document = need_object(value, where, "manifest")
        config = Descriptor.decode(need_object(document.get("config"), where, "'config'",
                                               "config"), f"{where}: config", "config")
        layers = []
        for position, layer in enumerate(need_list(document.get("layers"), where, "'layers'",
                                                   "layers")):
            path = field_path("layers", position)
            layers.append(Descriptor.decode(
                need_object(layer, where, f"layer {position + 1}", path),
                f"{where}: layer {position + 1}", path))
        media_type = document.get("mediaType")
        return cls(config, tuple(layers), media_type if isinstance(media_type, str) else "",
                   MappingProxyType(dict(document)))

    def to_json(self) -> dict:
        return dict(self.raw)


def sniff_media_type(data: bytes) -> str:
    """The ``mediaType`` a document names itself, "" when it is not JSON or names none
    (for a registry that sends a generic Content-Type)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return ""
    value = document.get("mediaType") if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""


def is_index(media_type: str, document: dict) -> bool:
    """Whether a fetched document is an index: by its media type (from the descriptor or
    the registry), else by its shape."""
    return media_type in INDEX_TYPES or "manifests" in document
