"""``docker://`` and ``oci://`` image specs: for ``layerfs mount``, pull what is missing
(or mount lazily); for ``layerfs inspect``, read the manifest and config alone."""

from __future__ import annotations

from ..images import Image
from ..images.plan import ImagePlan
from ..unpack import LayerCache
from .pull import RemoteOptions, connect, pull, remote_plan
from .reference import is_remote, parse_reference
from .resolve import resolve

__all__ = ["is_remote", "open_remote", "read_remote"]


def open_remote(spec: str, *, platform: str | None, cache: LayerCache | None, quiet: bool,
                options: RemoteOptions | None = None) -> Image:
    options = options or RemoteOptions()
    if options.lazy:
        from .lazy.open import open_lazy
        return open_lazy(parse_reference(spec), options, cache or LayerCache(),
                         platform=platform, quiet=quiet)
    return pull(parse_reference(spec), options, cache or LayerCache(), platform=platform,
                quiet=quiet).image


def read_remote(spec: str, *, platform: str | None,
                options: RemoteOptions | None = None) -> ImagePlan:
    """The image's layers as its manifest and config give them; no layer is fetched."""
    client = connect(parse_reference(spec), options or RemoteOptions())
    return remote_plan(resolve(client, platform))
