"""``layerfs pull``: an image from a registry into the layer cache (and an OCI layout).

Layers are fetched in parallel (``--jobs``), each streamed from the registry
straight into the chainID-keyed unpacker of :mod:`layerfs.unpack` while it is
written to a resumable partial file (:mod:`.download`). A layer already in the
cache is not fetched at all, unless an OCI layout is being written and lacks
its blob. Every digest is verified: manifest, config, blob, DiffID.

When a layer fails, the other downloads stop; layers already verified and
unpacked stay in the cache and partial downloads stay for the next attempt,
so pulling again resumes where the failed pull stopped.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..images import Image
from ..images.plan import ImagePlan, LayerSource, cached_layer, layer_label
from ..layer import Layer, LayerFacts
from ..sizes import plural
from ..unpack import CachedLayer, LayerBlob, LayerCache
from ..unpack.digests import chain_ids
from .auth import Credentials, find_credentials, parse_creds
from .client import RegistryClient
from .download import BlobDownload
from .errors import Cancelled
from .http import DEFAULT_TIMEOUT, HttpClient, RetryPolicy
from .layout import LayoutWriter
from .offline import remember, resolve_with_policy
from .progress import LayerRow, PullProgress
from .reference import Reference, parse_reference
from .resolve import RemoteImage, RemoteLayer

DEFAULT_JOBS = 3
SOURCE_SCHEME = "docker://"


@dataclass
class RemoteOptions:
    """How to reach a registry; set from the command line (see :mod:`.cli`)."""

    insecure: bool = False
    creds: str | None = None
    authfile: str | None = None
    jobs: int = DEFAULT_JOBS
    retries: int = RetryPolicy.retries
    timeout: float = DEFAULT_TIMEOUT
    lazy: bool = False
    pull: str = "always"
    """When the registry is asked (podman's --pull; :mod:`.offline`): always, newer,
    missing or never."""


def connect(ref: Reference, options: RemoteOptions,
            cancel: threading.Event | None = None) -> RegistryClient:
    credentials: Credentials | None = parse_creds(options.creds) if options.creds else \
        find_credentials(ref, options.authfile)
    http = HttpClient(insecure=options.insecure, timeout=options.timeout,
                      retry=RetryPolicy(retries=options.retries), cancel=cancel)
    return RegistryClient(ref, http, credentials)


def downloads_dir(cache: LayerCache) -> Path:
    return cache.directory / "downloads"


def remote_plan(image: RemoteImage) -> ImagePlan:
    """The image as its manifest and config describe it, no layer fetched (for inspect:
    a layer's blob is not meant to be read)."""
    return ImagePlan(layers=[layer_source(image, layer) for layer in image.layers],
                     name=f"{image.name}@{image.manifest.digest}"
                     if "@" not in image.name else image.name,
                     form="registry", config=image.config, source=SOURCE_SCHEME + image.name,
                     manifest=image.manifest.data, digest=image.manifest.digest)


def layer_what(image: RemoteImage, layer: RemoteLayer) -> str:
    return f"{image.name}: layer {layer.position + 1} ({layer.digest})"


def layer_source(image: RemoteImage, layer: RemoteLayer, opener=None) -> LayerSource:  # type: ignore[no-untyped-def]
    """The layer as the image readers describe one; ``opener`` reads its blob."""
    label = layer_label(layer.position, layer.diff_id or layer.digest)

    def not_fetched():  # type: ignore[no-untyped-def]
        raise AssertionError(f"layer {label}: its blob was not meant to be read")

    blob = LayerBlob(label=label, open=opener or not_fetched, blob_digest=layer.digest,
                     diff_id=layer.diff_id, size=layer.size)
    facts = LayerFacts(blob_digest=layer.digest, blob_size=layer.size,
                       media_type=layer.media_type, registry=image.name)
    return LayerSource(label=label, diff_id=layer.diff_id, created_by=layer.created_by,
                       blob=blob, facts=facts)


@dataclass
class PullResult:
    image: Image
    """The image as mountable layers of the cache."""
    remote: RemoteImage
    states: list[str]
    """Per layer: "done" (fetched) or "cached"."""

    def summary(self) -> str:
        fetched = self.states.count("done")
        return (f"{self.remote.name}: {plural(len(self.states), 'layer')} ({fetched} fetched, "
                f"{len(self.states) - fetched} cached), manifest {self.remote.manifest.digest}")


def pull(spec: str | Reference, options: RemoteOptions, cache: LayerCache, *,
         platform: str | None = None, layout: str | None = None,
         quiet: bool = False) -> PullResult:
    """Fetch the image into the cache (and ``layout``)."""
    ref = spec if isinstance(spec, Reference) else parse_reference(spec)
    cancel = threading.Event()
    client = connect(ref, options, cancel)
    image = resolve_with_policy(client, cache, platform, options.pull)
    writer = LayoutWriter(layout) if layout else None
    if writer is not None:
        writer.write_blob(image.config_data, image.config_descriptor.digest)
    fetcher = LayerFetcher(image, client, cache, writer, PullProgress(quiet=quiet))
    layers = fetcher.run(max(1, options.jobs), cancel)
    if writer is not None:
        writer.add_manifest(image.manifest, ref.tag)
    cache.record_image(SOURCE_SCHEME + image.name, image.manifest.digest,
                       [layer.chain_id for layer in layers])
    remember(cache, image)  # every layer is in the cache now: it mounts offline
    return PullResult(Image(layers=layers, name=image.name, form="registry", config=image.config),
                      image, [row.state for row in fetcher.rows])


class LayerFetcher:
    def __init__(self, image: RemoteImage, client: RegistryClient, cache: LayerCache,
                 layout: LayoutWriter | None, progress: PullProgress) -> None:
        self.image = image
        self.client = client
        self.cache = cache
        self.layout = layout
        self.progress = progress
        self.chains = chain_ids([layer.diff_id for layer in image.layers])
        self.rows = [progress.row(layer_label(layer.position, layer.diff_id), layer.size)
                     for layer in image.layers]

    def run(self, jobs: int, cancel: threading.Event,
            layers: Sequence[RemoteLayer] | None = None) -> list[Layer]:
        """Fetch ``layers`` (default: all), in parallel; the mountable layers, bottom first."""
        results: list[Layer | None] = [None] * len(self.image.layers)
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="layerfs-pull")
        futures: dict[Future, int] = {}
        try:
            for layer in self.image.layers if layers is None else layers:
                futures[pool.submit(self.fetch, layer)] = layer.position
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            cancel.set()
            raise
        finally:
            if any(f.done() and f.exception() for f in futures):
                cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.progress.close()
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
        first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0] if errors
                     else None)
        if first is not None:
            raise first
        for future, position in futures.items():
            results[position] = future.result()
        return [layer for layer in results if layer is not None]

    def fetch(self, layer: RemoteLayer) -> Layer:
        row = self.rows[layer.position]
        try:
            cached = self._fetch(layer, row)
        except BaseException:
            row.set("failed")
            raise
        return cached_layer(layer_source(self.image, layer), cached)

    def _fetch(self, layer: RemoteLayer, row: LayerRow) -> CachedLayer:
        chain = self.chains[layer.position]
        parent = self.chains[layer.position - 1] if layer.position else None
        layout = self.layout
        need_blob = layout is not None and not layout.has_blob(layer.digest, layer.size)
        if self.cache.find(chain) is not None and not need_blob:
            row.set("cached")
            return self.cache.ensure(layer_source(self.image, layer).blob, parent)
        if layout is not None and not need_blob:  # unpack the layout's verified copy
            path = layout.blob_path(layer.digest)
            blob = layer_source(self.image, layer, lambda: open(path, "rb")).blob
            assert blob is not None
            cached = self.cache.ensure(blob, parent, row)
            row.set("done")
            return cached
        download = BlobDownload(self.client, layer.digest, layer.size,
                                downloads_dir(self.cache), what=layer_what(self.image, layer))
        blob = layer_source(self.image, layer, download.open).blob
        assert blob is not None
        try:
            cached = self.cache.ensure(blob, parent, row)
        except BaseException:
            if download.complete:  # the blob was right, its content was not: no resume
                download.discard()
            raise
        if need_blob:
            assert layout is not None
            if not download.complete:  # cached meanwhile: still fetch the blob for the layout
                row.set("pulling")
                download.on_bytes = row.advance
                with download.open():
                    download.drain()
            download.take(layout.blob_path(layer.digest))
        else:
            download.discard()
        row.set("done")
        return cached
