"""What a reader finds in an image, before anything is unpacked, and turning it into layers.

Every reader returns an :class:`ImagePlan`: the layers bottom first, each a
directory already on disk (stores, extracted dirs) or a tar blob to unpack
(archives, layouts). ``inspect`` reads plans; ``mount`` materialises them:
blobs go through the layer cache, and the result is an
:class:`~layerfs.images.Image` of directory layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import ImageError
from ..layer import Layer, LayerFacts
from ..unpack import LayerBlob, LayerCache, Progress
from ..unpack.cache import CachedLayer, parent_chain
from ..unpack.digests import short
from .image import Image


@dataclass(frozen=True)
class LayerSource:
    label: str
    diff_id: str = ""
    created_by: str = ""
    blob: LayerBlob | None = None
    """A tar layer to unpack; or None when ``directory`` is given."""
    directory: str | None = None
    chain_id: str = ""
    facts: LayerFacts = field(default_factory=LayerFacts)
    """Blob digest, sizes, media type, store ids: shown by inspect."""


@dataclass
class ImagePlan:
    layers: list[LayerSource]
    name: str = ""
    form: str = ""
    config: dict = field(default_factory=dict)
    source: str = ""
    """The path the image was read from (for the cache's usage records)."""
    manifest: bytes = b""
    """The image manifest as stored (b"" for forms that keep none: docker save, layer dirs)."""
    digest: str = ""
    """The manifest's digest, the image digest skopeo and docker show ("" without one)."""

    def chain_ids(self) -> list[str]:
        """ChainIDs where every DiffID below is known ("" from the first unknown one up)."""
        chains: list[str] = []
        parent = ""
        for layer in self.layers:
            if layer.chain_id:
                parent = layer.chain_id
            elif layer.diff_id and (parent or not chains):
                parent = parent_chain(parent or None, layer.diff_id)
            else:
                parent = ""
            chains.append(parent)
        return chains


def layer_label(position: int, digest: str) -> str:
    return f"{position + 1} ({short(digest)})" if digest else str(position + 1)


def cached_layer(source: LayerSource, cached: CachedLayer) -> Layer:
    """The layer of an unpacked tar layer in the cache, as the index mounts it."""
    info = cached.info()
    facts = replace(source.facts, entries=info.get("entries"), diff_size=info.get("diff_size"),
                    compression=info.get("compression") or "",
                    blob_digest=source.facts.blob_digest or info.get("blob_digest") or "")
    return Layer(root=str(cached.root), label=source.label, diff_id=info["diff_id"],
                 chain_id=cached.chain_id, created_by=source.created_by,
                 sidecar=str(cached.sidecar_path), facts=facts)


def materialize(plan: ImagePlan, cache: LayerCache | None = None, *,
                quiet: bool = False) -> Image:
    """Unpack what needs unpacking and return the image as directory layers."""
    if not plan.layers:
        raise ImageError(f"{plan.source or plan.name}: the image has no layers")
    blobs = [layer for layer in plan.layers if layer.blob is not None]
    if blobs and cache is None:
        cache = LayerCache()
    progress = Progress(len(blobs), quiet=quiet)
    created: list = []
    layers: list[Layer] = []
    parent: str | None = None
    try:
        for source in plan.layers:
            if source.blob is None:
                assert source.directory is not None
                parent = source.chain_id or (parent_chain(parent, source.diff_id)
                                             if source.diff_id else None)
                layers.append(Layer(root=source.directory, label=source.label,
                                    diff_id=source.diff_id, chain_id=source.chain_id,
                                    created_by=source.created_by, facts=source.facts))
                continue
            assert cache is not None
            found_before = source.diff_id and cache.find(parent_chain(parent, source.diff_id))
            cached = cache.ensure(source.blob, parent, progress)
            if not found_before:
                created.append(cached)
            parent = cached.chain_id
            layers.append(cached_layer(source, cached))
    except BaseException:
        if cache is not None:
            cache.discard(created)
        raise
    finally:
        progress.close()
    if cache is not None and blobs:
        cache.record_image(plan.source, plan.name, [layer.chain_id for layer in layers])
    return Image(layers=layers, name=plan.name, form=plan.form, config=plan.config)
