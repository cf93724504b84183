"""Helpers of the image tests: mount an image (the shared, always-unmounting
helper of tests/support), run the CLI, and snapshot a tree as ``umoci unpack``
can be compared with it (types, modes, owners, sizes, contents, targets).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Iterator

from tests.support.mounting import layerfs_env, layerfs_mounted
from tests.support.mounting import run_layerfs as _run_layerfs

env = layerfs_env


def run_layerfs(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return _run_layerfs(*args, timeout=timeout)


@contextlib.contextmanager
def mounted(image: str, mountpoint: Path, *args: str) -> Iterator[Path]:
    """``layerfs mount -f --quiet ARGS IMAGE MOUNTPOINT`` for the duration of the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    with layerfs_mounted(mountpoint, "--quiet", *args, image):
        yield mountpoint


def snapshot(root: Path, *, owners: bool = True) -> dict[str, tuple]:
    """path -> (type, mode, [uid, gid,] size, content sha256 | link target | rdev)."""
    tree: dict[str, tuple] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, base))
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as data:
                    detail: object = hashlib.sha256(data.read()).hexdigest()
                size = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                detail, size = os.fsdecode(os.readlink(full)), 0
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail, size = st.st_rdev, 0
            else:
                detail, size = None, 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            owner = (st.st_uid, st.st_gid) if owners else ()
            tree[rel] = (kind, stat.S_IMODE(st.st_mode), *owner, size, detail)
    return tree


def names(root: Path) -> set[str]:
    return set(snapshot(root, owners=False))
