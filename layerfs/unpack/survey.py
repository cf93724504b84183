"""Facts about a layer without unpacking it: entry count and sizes, for ``inspect``."""

from __future__ import annotations

import os

from ..errors import ImageError
from .cache import LayerBlob, verify_digests
from .limits import UnpackLimits
from .stream import LayerStream
from .tarformat import TarStreamReader


def survey_blob(blob: LayerBlob, limits: UnpackLimits | None = None) -> dict:
    """Stream a tar layer once: its entries, uncompressed size and digests."""
    try:
        raw = blob.open()
    except FileNotFoundError:
        raise ImageError(f"layer {blob.label}: blob is missing") from None
    except PermissionError:
        raise ImageError(f"layer {blob.label}: blob is not readable (permission denied)") from None
    with raw:
        limits = limits or UnpackLimits.from_env()
        stream = LayerStream(raw, blob.label, background=False,
                             max_size=limits.max_layer_size)
        entries = 0
        for _ in TarStreamReader(stream, blob.label, limits):
            entries += 1
            if entries > limits.max_entries:
                raise ImageError(f"layer {blob.label}: more than {limits.max_entries} entries")
        stream.drain()
    verify_digests(blob, stream)
    return {"entries": entries, "diff_size": stream.diff_size, "diff_id": stream.diff_id,
            "blob_digest": stream.blob_digest, "blob_size": stream.blob_size,
            "compression": stream.compression}


def survey_dir(root: str) -> dict:
    """Entries and bytes of a layer directory (markers included, as stored)."""
    entries = 0
    file_bytes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for name in filenames:
            try:
                file_bytes += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return {"entries": entries, "file_bytes": file_bytes}
