"""Whether a mount's layers show any xattr: what ``-o xattrs=auto`` decides on.

``ls -l`` asks every entry for two xattrs (``security.selinux``,
``system.posix_acl_access``) and the kernel caches no answer, so on a FUSE
mount each is a round trip. A read-only mount of layers that hold no xattr
may answer GETXATTR with ENOSYS instead: the kernel then answers EOPNOTSUPP
itself for the rest of the connection (layerfs/fs.py). This module finds out
whether the layers hold none:

- a layer unpacked into the cache recorded whether an entry of its tar carried
  an xattr the mount shows (``has_xattrs`` in its info, written by
  :mod:`layerfs.unpack.extract`); what it could not store is in its sidecar;
- any other layer (read in place: extracted dirs, docker, containerd and
  containers-storage stores; a cache entry older than the record; a lazy
  skeleton) is walked: llistxattr of every entry, in a subprocess at low
  priority (outside the daemon's GIL: 50k entries cost about 0.45 s of CPU).
  The walk reads the layer's metadata into the kernel's caches as
  :mod:`layerfs.prefetch`'s ``du`` does, so the read-ahead skips that layer.

Overlay's own xattrs (whiteouts, opaque dirs, redirects) and layerfs's private
ones never show, so they do not count. Whatever cannot be read counts as
"may hold xattrs": the mount then keeps serving them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Sequence

import trio

from .layerview import LayerView
from .xattrwalk import NONE, shows_xattrs

log = logging.getLogger(__name__)

RECORD_KEY = "has_xattrs"
"""The key of a cached layer's info that records whether its entries carry xattrs."""
AT_ONCE = 4
"""Layers walked at the same time (as prefetch.py's read-ahead)."""


def recorded(view: LayerView) -> bool | None:
    """Whether the layer shows xattrs as far as its unpack recorded; None when it did
    not record it (the layer is then walked)."""
    sidecar = view.sidecar
    if sidecar is None:
        return None
    if sidecar.xattrs or sidecar.info.get(RECORD_KEY):
        return True
    if RECORD_KEY not in sidecar.info:
        return None
    # A tar without xattrs, unpacked where the filesystem labels every file itself
    # (an SELinux host): the root shows what the entries would.
    return shows_xattrs(view.layer.root_bytes)


def layers_to_walk(views: Sequence[LayerView]) -> list[str]:
    """The roots of the layers whose xattrs are known only by walking them."""
    return [view.layer.root for view in views if recorded(view) is None]


async def image_shows_xattrs(views: Sequence[LayerView]) -> bool:
    """Whether any layer may show an xattr: from the records, else by walking the
    other layers (each to the end: the walks are also their read-ahead).
    Cancelling it kills the walks."""
    records = [recorded(view) for view in views]
    if any(records):
        return True
    found: list[bool] = []
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def walk(root: str) -> None:
        async with limiter:
            found.append(await _walk_in_subprocess(root))

    unknown = [view.layer.root for view, record in zip(views, records, strict=True)
               if record is None]
    if unknown:
        log.info("walking %d layer(s) for xattrs", len(unknown))
    async with trio.open_nursery() as nursery:
        for root in reversed(unknown):  # top first, as the read-ahead: what the merge reads first
            nursery.start_soon(walk, root)
    return any(found)


async def _walk_in_subprocess(root: str) -> bool:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    try:
        result = await trio.run_process(
            [sys.executable, "-m", "layerfs.xattrwalk", root], capture_stdout=True,
            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    except OSError as exc:
        log.info("cannot walk %s for xattrs (%s): xattrs stay served", root, exc)
        return True
    return result.stdout.decode(errors="replace").strip() != NONE
