"""Cache entries appear and disappear whole: built aside, published and removed by rename.

An entry of the cache (an unpacked layer, a lazy skeleton) is a directory
holding ``root/`` and a ``meta.json`` sidecar. It is built in
``tmp/<pid>.<random>/`` while ``tmp/<pid>.<random>.lock`` is held, so
:meth:`~layerfs.unpack.cache.LayerCache.remove_stale_tmp` tells a live build
from a dead one's leftover; it gets its final name by one rename, so no reader
sees it half made; users hold a shared lock on its ``meta.json``, and removal
takes that lock exclusively and renames the entry back into ``tmp/`` before
deleting it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..rmtree import remove_tree
from .locks import FileLock

ROOT_NAME = "root"


@contextmanager
def staged_entry(tmp_dir: Path) -> Iterator[Path]:
    """A new work directory under ``tmp_dir`` holding an empty ``root/`` (mode 0755), locked
    while the block runs; what is left of it afterwards (not published) is removed."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
    work = tmp_dir / name
    tmp_lock = FileLock(tmp_dir / f"{name}.lock")
    tmp_lock.acquire()
    try:
        work.mkdir()
        root = work / ROOT_NAME
        root.mkdir(mode=0o755)
        os.chmod(root, 0o755)  # whatever the umask
        yield work
    finally:
        if work.exists():
            remove_tree(work)
        tmp_lock.release()
        try:
            os.unlink(tmp_lock.path)
        except FileNotFoundError:
            pass


def publish(work: Path, target: Path) -> None:
    """Rename a finished work directory to ``target`` (the caller holds the entry's build
    lock); whatever is at ``target`` is an incomplete leftover, never trusted."""
    if target.exists():
        remove_tree(target)
    os.rename(work, target)


def hold(sidecar: Path) -> FileLock | None:
    """A shared lock on the sidecar of a published entry, or None when the entry is gone
    (removed before or while the lock was taken)."""
    lock = FileLock(sidecar)
    try:
        lock.acquire(shared=True)
        still_there = os.fstat(lock.fd).st_ino == os.stat(sidecar).st_ino
    except FileNotFoundError:
        still_there = False
    if not still_there:
        lock.release()
        return None
    return lock


def remove_entry(entry: Path, sidecar: Path, tmp_dir: Path) -> bool:
    """Remove a published entry unless someone holds its sidecar; whether it was removed."""
    lock = FileLock(sidecar)
    try:
        if not lock.acquire(wait=False):
            return False
    except FileNotFoundError:  # removed meanwhile
        return False
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        doomed = tmp_dir / f"removing.{entry.name}.{uuid.uuid4().hex[:8]}"
        os.rename(entry, doomed)
    finally:
        lock.release()
    remove_tree(doomed)
    return True
