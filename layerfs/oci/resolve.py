"""The one resolver: a manifest or index -> (indexes, by platform) -> image manifest -> config.

Used alike by the local readers (OCI layouts, ``docker save`` archives with
an index, containerd's content store, ``commit --into``) and by the registry
client: they differ only in how a blob is fetched (a ``Fetch``: a file of the
image or an HTTP request), which also verifies it against its digest. An
index is followed to the entry for the wanted platform (an index without
platforms to its first image); nesting is bounded and a cycle is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ImageError
from .config import ImageConfig
from .decode import parse_object
from .mediatypes import MANIFEST_TYPES
from .model import Descriptor, ImageManifest, Index, is_index

MAX_NESTING = 8
"""Indexes followed before giving up: real images nest at most two (Docker 25's
``docker save``: index.json -> index -> manifest)."""


@dataclass(frozen=True, slots=True)
class Document:
    """A fetched manifest, index or config: its bytes (verified against ``digest``), the
    media type its descriptor or the registry gave ("" when none did) and ``name``, how
    messages call it (``blobs/sha256/...`` in a layout, ``manifest D`` from a registry)."""

    data: bytes
    media_type: str
    digest: str
    name: str = ""

    @property
    def shown(self) -> str:
        return self.name or self.digest

    def json(self, where: str) -> dict:
        return parse_object(self.data, where, self.shown)


Fetch = Callable[[Descriptor, str], Document]
"""Fetch and verify the blob a descriptor names; the ``str`` says what it is for
messages ("manifest" or "config")."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """An image manifest found from a reference or descriptor."""

    manifest: ImageManifest
    document: Document
    index: Document | None = None
    """The first index followed, if the start was one."""
    entry: Descriptor | None = None
    """The manifest's entry in the last index followed (its platform)."""


@dataclass(frozen=True, slots=True)
class Image:
    """An image manifest with its config, the DiffIDs matched to the layers."""

    manifest: ImageManifest
    document: Document
    config: ImageConfig
    config_document: Document
    index: Document | None = None


def choose(index: Index, wanted: str, where: str) -> Descriptor:
    """The entry of ``index`` for platform ``wanted``; its first image when no entry names
    a platform. ``where`` names the index."""
    entries = index.images()
    if not entries:
        raise ImageError(f"{where} lists no image manifests")
    platformed = [entry for entry in entries if entry.platform is not None]
    if not platformed:
        return entries[0]
    for entry in platformed:
        assert entry.platform is not None
        if entry.platform.matches(wanted):
            return entry
    available = ", ".join(str(entry.platform) for entry in platformed
                          if entry.platform is not None and entry.platform.os != "unknown")
    raise ImageError(f"{where}: no image for platform {wanted} (available: {available}; "
                     "choose with --platform)")


def _kind(document: Document, raw: dict) -> str:
    """A document's media type: as its descriptor or the registry gave it, else its own."""
    own = raw.get("mediaType")
    return document.media_type or (own if isinstance(own, str) else "")


def decode_manifest(document: Document, where: str, raw: dict | None = None) -> ImageManifest:
    """An image manifest document (``where`` names the image), its media type checked;
    ``raw`` its JSON when already parsed."""
    raw = document.json(where) if raw is None else raw
    kind = _kind(document, raw)
    if kind and kind not in MANIFEST_TYPES:
        raise ImageError(f"{where}: unsupported manifest type {kind}")
    return ImageManifest.decode(raw, f"{where}: manifest {document.digest}")


def follow(start: Document, fetch: Fetch, wanted: str, where: str) -> Resolved:
    """The image manifest ``start`` leads to: itself, or through indexes the entry for
    ``wanted``. ``where`` names the image (the layout, the reference)."""
    seen: set[str] = set()
    document, first_index, entry = start, None, None
    for _ in range(MAX_NESTING):
        if document.digest in seen:
            raise ImageError(f"{where}: index {document.digest} refers back to itself (a cycle)")
        seen.add(document.digest)
        raw = document.json(where)
        if not is_index(_kind(document, raw), raw):
            return Resolved(decode_manifest(document, where, raw), document, first_index, entry)
        first_index = first_index or document
        named = f"{where}: index {document.digest}"
        entry = choose(Index.decode(raw, named), wanted, named)
        document = fetch(entry, "manifest")
    raise ImageError(f"{where}: image indexes nested too deeply")


def with_config(found: Resolved, config: Document, where: str) -> Image:
    """``found`` with its config (fetched by the caller, verified), the layer count checked."""
    decoded = ImageConfig.decode(config.json(where), where)
    layers = len(found.manifest.layers)
    if len(decoded.diff_ids) != layers:
        raise ImageError(f"{where}: manifest lists {layers} layers, "
                         f"config {len(decoded.diff_ids)} DiffIDs")
    return Image(found.manifest, found.document, decoded, config, found.index)


def resolve(start: Document, fetch: Fetch, wanted: str, where: str) -> Image:
    """Index -> the platform's manifest -> its config: the whole walk."""
    found = follow(start, fetch, wanted, where)
    return with_config(found, fetch(found.manifest.config, "config"), where)
