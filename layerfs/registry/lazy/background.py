"""Layers of a lazy mount that cannot be read in parts, pulled whole behind a live mount.

A plain gzip (or plain zstd) layer has no table of contents: its files are known
only once it is read to the end. :class:`BackgroundPull` is the
:class:`~layerfs.deferred.PendingLayers` of such layers: the daemon runs
:meth:`BackgroundPull.wait` after the mount went live, and it pulls them, in
parallel, streaming each into the layer cache exactly as ``layerfs pull`` does
(resumable partial downloads, every digest verified). It has its own registry
connection and cancel flag, so stopping it (unmount) or its failure leaves the
lazily fetched layers' connection alone.
"""

from __future__ import annotations

import logging
import threading
import time

from ...layer import Layer
from ...unpack import LayerCache
from ..client import RegistryClient
from ..progress import PullProgress
from ..pull import LayerFetcher
from ..resolve import RemoteImage, RemoteLayer

log = logging.getLogger(__name__)


class BackgroundPull:
    def __init__(self, image: RemoteImage, client: RegistryClient, cancel: threading.Event,
                 cache: LayerCache, layers: list[Layer], missing: list[RemoteLayer],
                 jobs: int) -> None:
        """``layers``: the whole stack, bottom first, where the ``missing`` ones are
        only named (their cache directory does not exist yet); ``client`` uses
        ``cancel`` as its cancel flag."""
        self.image = image
        self.client = client
        self.cache = cache
        self.layers = list(layers)
        self.missing = sorted(missing, key=lambda layer: layer.position)
        self.jobs = max(1, jobs)
        self._cancel = cancel
        self.directory = str(cache.directory)
        self.description = f"{len(self.missing)} layer(s) of {image.name}"

    def wait(self, *, quiet: bool = True) -> list[Layer]:
        """Pull the missing layers; ``quiet=False``: with the progress display (a
        writable mount pulls them in the foreground, before it goes live)."""
        started = time.monotonic()
        log.info("pulling whole: %s", ", ".join(layer.digest for layer in self.missing))
        fetcher = LayerFetcher(self.image, self.client, self.cache, None,
                               PullProgress(quiet=quiet))
        pulled = fetcher.run(self.jobs, self._cancel, self.missing)
        layers = list(self.layers)
        for remote, layer in zip(self.missing, pulled, strict=True):
            layers[remote.position] = layer
        log.info("pulled %s in %.1f s", self.description, time.monotonic() - started)
        return layers

    def cancel(self) -> None:
        self.client.http.abort()  # a stalled transfer stops now, not at its timeout
