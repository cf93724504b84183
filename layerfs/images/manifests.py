"""Image manifests and the content-addressed blobs they name (FORMATS.md sections 2, 3, 7).

Shared by the readers whose images are a manifest plus blobs: OCI layouts
(``blobs/<alg>/<hex>``), containerd's content store (the same naming) and
skopeo's ``dir:`` (bare hex names, one manifest). An index is followed, by
platform, down to one image manifest; a JSON blob is checked against its
digest; a manifest's config and layer descriptors are checked for shape and
matched against the config's DiffIDs.
"""

from __future__ import annotations

import hashlib

from ..errors import ImageError
from ..unpack.digests import parse_digest
from .config import diff_ids_of
from .files import ImageFiles, parse_json
from .platform import describe, matches
from .shapes import descriptor as checked_descriptor
from .shapes import need_list, need_object

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
_MAX_NESTING = 8


def blob_name(digest: str, where: str) -> str:
    """The file of a blob in an OCI layout or a containerd content store."""
    algorithm, hex_digest = parse_digest(digest, f"{where}: descriptor")
    return f"blobs/{algorithm}/{hex_digest}"


def verify_blob(data: bytes, digest: str, what: str) -> None:
    """Content addressed means checked: a blob must hash to the digest naming it."""
    algorithm, expected = parse_digest(digest, what)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise ImageError(f"{what}: digest mismatch, the content is {algorithm}:{actual}")


def read_blob_json(files: ImageFiles, digest: str, what: str) -> dict:
    """The JSON object stored as blob ``digest`` (``what``: "manifest", "config"), verified."""
    name = blob_name(digest, files.where)
    try:
        data = files.read_bytes(name)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ImageError(f"{files.where}: {what} blob {digest} is missing ({name})") from None
    except OSError as exc:
        raise ImageError(f"{files.where}: {name}: {exc.strerror or exc}") from None
    verify_blob(data, digest, f"{files.where}: {what} blob {digest}")
    document = parse_json(data, files.where, name)
    if not isinstance(document, dict):
        raise ImageError(f"{files.where}: {what} {digest} is not a JSON object")
    return document


def media_type(document: dict) -> str | None:
    """The ``mediaType`` of a descriptor or document; "invalid" when it is not a string."""
    value = document.get("mediaType")
    return value if isinstance(value, str) else None if value is None else "invalid"


def image_entries(index: dict, where: str) -> list[dict]:
    """The descriptors of an index that lead to images (not attestations, not junk)."""
    manifests = index.get("manifests")
    if manifests is None:  # Docker 25 wrote "manifests": null
        return []
    need_list(manifests, where, "'manifests'")
    return [checked_descriptor(m, where) for m in manifests if isinstance(m, dict)
            and media_type(m) in INDEX_TYPES | MANIFEST_TYPES | {None}]


def pick_platform(descriptors: list[dict], wanted: str, where: str, what: str) -> dict:
    """The first descriptor whose ``platform`` matches ``wanted`` (``what`` names the index)."""
    for descriptor in descriptors:
        if matches(descriptor.get("platform"), wanted):
            return descriptor
    available = ", ".join(describe(d["platform"]) for d in descriptors
                          if isinstance(d.get("platform"), dict))
    raise ImageError(f"{where}: {what} has no image for platform {wanted} "
                     f"(available: {available}; choose with --platform)")


def resolve_manifest(files: ImageFiles, descriptor: dict, platform: str) -> tuple[dict, str]:
    """(image manifest, its digest) that ``descriptor`` leads to: a manifest itself, or an
    index (nested ones too) followed to the entry for ``platform``."""
    seen: set[str] = set()
    for _ in range(_MAX_NESTING):
        digest = str(descriptor.get("digest", ""))
        if digest in seen:
            raise ImageError(f"{files.where}: index {digest} refers back to itself (a cycle)")
        seen.add(digest)
        document = read_blob_json(files, digest, "manifest")
        kind = media_type(descriptor) or media_type(document)
        if kind in INDEX_TYPES or "manifests" in document:
            entries = image_entries(document, f"{files.where}: index {digest}")
            if not entries:
                raise ImageError(f"{files.where}: index {digest} lists no image manifests")
            platformed = [m for m in entries if "platform" in m]
            descriptor = pick_platform(platformed, platform, files.where, f"index {digest}") \
                if platformed else entries[0]
            continue
        return document, digest
    raise ImageError(f"{files.where}: image indexes nested too deeply")


def manifest_parts(manifest: dict, where: str) -> tuple[dict, list[dict]]:
    """(config descriptor, layer descriptors) of an image manifest, their shapes checked;
    ``where`` names the manifest in messages."""
    config = checked_descriptor(need_object(manifest.get("config"), where, "'config'"),
                                f"{where}: config")
    layers = [checked_descriptor(need_object(layer, where, f"layer {position + 1}"),
                                 f"{where}: layer {position + 1}")
              for position, layer in enumerate(need_list(manifest.get("layers"), where,
                                                         "'layers'"))]
    return config, layers


def layer_diff_ids(config: dict, layers: list[dict], where: str) -> list[str]:
    """The DiffIDs of ``config``, one per layer descriptor of its manifest."""
    diff_ids = diff_ids_of(config, where)
    if len(diff_ids) != len(layers):
        raise ImageError(f"{where}: manifest lists {len(layers)} layers, "
                         f"config {len(diff_ids)} DiffIDs")
    return diff_ids
