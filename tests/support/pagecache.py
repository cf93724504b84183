"""Making one file's data cold without touching the rest of the machine."""

from __future__ import annotations

import os
from pathlib import Path


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (written back first: only
    clean pages can go)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
