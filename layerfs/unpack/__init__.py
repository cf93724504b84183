"""Unpacking tar layers into the chainID-keyed layer cache.

- :mod:`.stream`: blob bytes -> decompressed, hashed tar bytes;
- :mod:`.names`: tar entry names -> safe layer-relative paths;
- :mod:`.extract`: tar members -> files on disk plus a sidecar;
- :mod:`.cache`: where layers live, locking, atomic publication;
- :mod:`.inventory`: what is cached and used (``cache ls``/``prune``);
- :mod:`.digests`: DiffIDs, ChainIDs.
"""

from .cache import CachedLayer, LayerBlob, LayerCache, default_cache_dir
from .progress import Progress

__all__ = ["CachedLayer", "LayerBlob", "LayerCache", "Progress", "default_cache_dir"]
