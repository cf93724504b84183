"""A small record of each live mount, kept in the runtime dir while the daemon serves.

``/proc/self/mountinfo`` tells where layerfs is mounted and its source (the
image reference, passed as ``fsname=``), but not what only the daemon knows:
its pid, the FUSE engine, the upper dir. The daemon writes those to
``$XDG_RUNTIME_DIR/layerfs/mounts/<hash of the mountpoint>.json`` (root:
``/run/layerfs/mounts``) once it serves, and removes it when it stops;
``layerfs mounts`` reads them. A record whose daemon is gone (killed before it
could remove it; its pid may since name another process: the record holds the
daemon's start time too) is ignored, and removed by :func:`prune`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator


def records_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/layerfs/mounts")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "layerfs" if runtime else Path(f"/tmp/layerfs-{os.getuid()}")
    return base / "mounts"


def record_path(mountpoint: str) -> Path:
    name = hashlib.sha256(os.fsencode(mountpoint)).hexdigest()[:32]
    return records_dir() / f"{name}.json"


@contextlib.contextmanager
def mount_record(mountpoint: str, *, image: str, engine: str, upper: str | None
                 ) -> Iterator[None]:
    """Keep a record of this daemon's mount at the resolved path ``mountpoint`` while
    the block runs (best effort: a mount without one is still listed)."""
    path = record_path(mountpoint)
    record = {"mountpoint": mountpoint, "image": _unescape_option(image), "engine": engine, "upper": upper,
              "pid": os.getpid(), "started": _start_time(os.getpid())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    except OSError:
        path = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if path is not None:
            with contextlib.suppress(OSError):
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()


def _unescape_option(text: str) -> str:
    """``fsname=`` as given to FUSE (``\\,`` for a comma) back to the plain text."""
    out, chars = [], iter(text)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(record: object) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return False
    started = record.get("started")
    return started is not None and _start_time(record["pid"]) == started


def read_record(mountpoint: str) -> dict | None:
    """The record of the live daemon serving ``mountpoint``, or None."""
    try:
        record = json.loads(record_path(mountpoint).read_text())
    except (OSError, ValueError):
        return None
    if not _alive(record) or record.get("mountpoint") != mountpoint:
        return None
    return record


def prune() -> None:
    """Remove the records of daemons that are gone (best effort)."""
    try:
        paths = list(records_dir().glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if not _alive(record):
            with contextlib.suppress(OSError):
                path.unlink()
