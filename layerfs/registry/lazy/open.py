"""``layerfs mount --lazy docker://...``: the image as layers, most of them not fetched.

Per layer, in parallel: a layer already in the layer cache is used as is; a
zstd:chunked, eStargz or uncompressed layer gets a skeleton from its table of contents
(reused when already built) and fetches file data on first open; any other
layer (plain gzip, plain zstd) is left to a :class:`~.background.BackgroundPull`
that pulls it whole once the mount is live (``background=False``: now, as
``layerfs pull`` does).
"""

from __future__ import annotations

import threading

from ...images import Image
from ...images.plan import layer_label
from ...layer import Layer, LayerFacts
from ...unpack import LayerCache
from ..client import RegistryClient
from ..progress import PullProgress
from ..pull import SOURCE_SCHEME, LayerFetcher, RemoteOptions, connect, layer_what
from ..reference import Reference
from ..resolve import RemoteImage, RemoteLayer, resolve
from .background import BackgroundPull
from .content import LazyContent
from .skeleton import LazyStore
from .toc import lazy_kind, read_toc


def open_lazy(ref: Reference, options: RemoteOptions, cache: LayerCache, *,
              platform: str | None = None, quiet: bool = False,
              background: bool = True) -> Image:
    cancel = threading.Event()
    client = connect(ref, options, cancel)
    image = resolve(client, platform)
    fetcher = LazyFetcher(image, client, cache, None, PullProgress(quiet=quiet),
                          background=background)
    layers = fetcher.run(max(1, options.jobs), cancel)
    cache.record_image(SOURCE_SCHEME + image.name, image.manifest.digest,
                       [layer.chain_id for layer in layers],
                       lazy_blobs=[layer.facts.blob_digest for layer in layers
                                   if layer.facts.lazy])
    pending = None
    if fetcher.deferred:
        background_cancel = threading.Event()
        pending = BackgroundPull(image, connect(ref, options, background_cancel),
                                 background_cancel, cache, layers, fetcher.deferred,
                                 options.jobs)
    return Image(layers=layers, name=image.name, form="registry (lazy)", config=image.config,
                 pending=pending)


class LazyFetcher(LayerFetcher):
    """Fetches tables of contents where it can; whole layers where it must, or leaves
    them for later (``background``)."""

    def __init__(self, image: RemoteImage, client: RegistryClient, cache: LayerCache,
                 layout: None, progress: PullProgress, *, background: bool = False) -> None:
        super().__init__(image, client, cache, layout, progress)
        self.background = background
        self.deferred: list[RemoteLayer] = []
        """Layers left to pull whole after the mount went live."""
        self._deferred_lock = threading.Lock()

    def fetch(self, layer: RemoteLayer) -> Layer:
        chain = self.chains[layer.position]
        if self.cache.find(chain) is not None:
            return super().fetch(layer)
        if lazy_kind(layer) is not None:
            lazy = self._lazy(layer)
            if lazy is not None:
                return lazy
        if not self.background:
            return super().fetch(layer)
        self.rows[layer.position].set("background")
        with self._deferred_lock:
            self.deferred.append(layer)
        label = layer_label(layer.position, layer.diff_id)
        return Layer(root=str(self.cache.layer(chain).root), label=label,
                     diff_id=layer.diff_id, chain_id=chain, created_by=layer.created_by,
                     facts=LayerFacts(blob_digest=layer.digest, blob_size=layer.size,
                                      media_type=layer.media_type, registry=self.image.name,
                                      pending=True))

    def _lazy(self, layer: RemoteLayer) -> Layer | None:
        """The layer mounted from its table of contents (None if it has none after all)."""
        chain = self.chains[layer.position]
        row = self.rows[layer.position]
        label = layer_label(layer.position, layer.diff_id)
        what = layer_what(self.image, layer)
        row.set("toc")
        store = LazyStore(self.cache)
        try:
            lazy = store.ensure(layer.digest, label, lambda: read_toc(self.client, layer, what))
        except BaseException:
            row.set("failed")
            raise
        if lazy is None:
            return None
        row.set("lazy")
        content = LazyContent(self.client, lazy, label)
        facts = LayerFacts(lazy=content.kind, blob_digest=layer.digest, blob_size=layer.size,
                           media_type=layer.media_type, registry=self.image.name)
        return Layer(root=str(lazy.root), label=label, diff_id=layer.diff_id,
                     chain_id=chain, created_by=layer.created_by,
                     sidecar=str(lazy.sidecar_path), content=content, facts=facts)
