"""``docker://`` and ``oci://`` image specs for ``layerfs mount``: pull what is missing."""

from __future__ import annotations

from ..images import Image
from ..unpack import LayerCache
from .pull import RemoteOptions, pull
from .reference import is_remote, parse_reference

__all__ = ["is_remote", "open_remote"]


def open_remote(spec: str, *, platform: str | None, cache: LayerCache | None, quiet: bool,
                options: RemoteOptions | None = None) -> Image:
    options = options or RemoteOptions()
    if options.lazy:
        from .lazy.open import open_lazy
        return open_lazy(parse_reference(spec), options, cache or LayerCache(),
                         platform=platform, quiet=quiet)
    return pull(parse_reference(spec), options, cache or LayerCache(), platform=platform,
                quiet=quiet).image
