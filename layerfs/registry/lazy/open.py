"""``layerfs mount --lazy docker://...``: the image as layers, most of them not fetched.

Per layer, in parallel: a layer already in the layer cache is used as is; a
zstd:chunked, eStargz or uncompressed layer gets a skeleton from its table of contents
(reused when already built) and fetches file data on first open; any other
layer is pulled whole into the layer cache, as ``layerfs pull`` does.
"""

from __future__ import annotations

import threading

from ...images import Image
from ...images.plan import layer_label
from ...layer import CONTENT_KEY, Layer
from ...sidecar import SIDECAR_KEY
from ...unpack import LayerCache
from ..progress import PullProgress
from ..pull import SOURCE_SCHEME, LayerFetcher, RemoteOptions, connect, layer_what
from ..reference import Reference
from ..resolve import RemoteLayer, resolve
from .content import LazyContent
from .skeleton import LazyStore
from .toc import lazy_kind, read_toc


def open_lazy(ref: Reference, options: RemoteOptions, cache: LayerCache, *,
              platform: str | None = None, quiet: bool = False) -> Image:
    cancel = threading.Event()
    client = connect(ref, options, cancel)
    image = resolve(client, platform)
    fetcher = LazyFetcher(image, client, cache, None, PullProgress(quiet=quiet))
    layers = fetcher.run(max(1, options.jobs), cancel)
    cache.record_image(SOURCE_SCHEME + image.name, image.manifest.digest,
                       [layer.chain_id for layer in layers])
    return Image(layers=layers, name=image.name, form="registry (lazy)", config=image.config)


class LazyFetcher(LayerFetcher):
    """Fetches tables of contents where it can, whole layers where it must."""

    def fetch(self, layer: RemoteLayer) -> Layer:
        chain = self.chains[layer.position]
        if self.cache.find(chain) is None and lazy_kind(layer) is not None:
            row = self.rows[layer.position]
            label = layer_label(layer.position, layer.diff_id)
            what = layer_what(self.image, layer)
            row.set("toc")
            store = LazyStore(self.cache)
            try:
                lazy = store.ensure(layer.digest, label,
                                    lambda: read_toc(self.client, layer, what))
            except BaseException:
                row.set("failed")
                raise
            if lazy is not None:
                row.set("lazy")
                content = LazyContent(self.client, lazy, label)
                extra = {SIDECAR_KEY: str(lazy.sidecar_path), CONTENT_KEY: content,
                         "lazy": content.kind, "blob_digest": layer.digest,
                         "blob_size": layer.size, "media_type": layer.media_type,
                         "registry": self.image.name}
                return Layer(root=str(lazy.root), label=label, diff_id=layer.diff_id,
                             chain_id=chain, created_by=layer.created_by, extra=extra)
        return super().fetch(layer)
