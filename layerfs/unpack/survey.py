"""Facts about a layer without unpacking it: entry count and sizes, for ``inspect``."""

from __future__ import annotations

import os
import tarfile

from ..errors import ImageError
from .cache import LayerBlob, verify_digests
from .stream import LayerStream


def survey_blob(blob: LayerBlob) -> dict:
    """Stream a tar layer once: its entries, uncompressed size and digests."""
    try:
        raw = blob.open()
    except FileNotFoundError:
        raise ImageError(f"layer {blob.label}: blob is missing") from None
    except PermissionError:
        raise ImageError(f"layer {blob.label}: blob is not readable (permission denied)") from None
    with raw:
        stream = LayerStream(raw, blob.label, background=False)
        entries = 0
        try:
            with tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape",  # type: ignore[arg-type]
                              ) as tar:
                for _ in tar:
                    entries += 1
        except tarfile.TarError as exc:
            raise ImageError(f"layer {blob.label}: not a valid tar archive ({exc})") from None
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
