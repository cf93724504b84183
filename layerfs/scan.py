"""Reading one directory of one layer: the only place that lists layer directories.

``scan_dir`` turns a backing directory into a :class:`~layerfs.merge.DirListing`
(names, whiteouts, opaque flag) plus the directory entries the index needs to
stat the winners. Symlinks are never followed: entries are classified with
``d_type``/``lstat`` and only real directories are descended into.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .errors import LayerError
from .layer import Layer
from .merge import DirListing
from .redirects import DIR, MISSING, OTHER, WHITEOUT, Probe
from .whiteouts import (
    OPAQUE_MARKER,
    OPAQUE_XATTRS,
    REDIRECT_XATTRS,
    WHITEOUT_PREFIX,
    WHITEOUT_XATTRS,
    MarkerName,
    classify_marker,
    is_whiteout_device,
    opaque_state,
    redirect_of,
)

_OPAQUE_XATTR_SET = frozenset(OPAQUE_XATTRS)
_DIR_XATTR_SET = frozenset(OPAQUE_XATTRS + REDIRECT_XATTRS)


@dataclass(slots=True)
class ScannedDir:
    listing: DirListing
    dirents: dict[bytes, os.DirEntry]
    redirect: bytes | None = None
    """The dir's overlay redirect: its lower copies are elsewhere."""


def read_xattrs(path: bytes, wanted: frozenset[bytes] | None = None) -> dict[bytes, bytes]:
    """The xattrs of ``path`` (not following a final symlink), optionally only ``wanted`` ones."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return {}
        raise
    values: dict[bytes, bytes] = {}
    for name in names:
        bname = os.fsencode(name)
        if wanted is not None and bname not in wanted:
            continue
        try:
            values[bname] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.EPERM, errno.EACCES, errno.ENOTSUP):
                raise
    return values


def _has_xwhiteout(path: bytes) -> bool:
    for name in WHITEOUT_XATTRS:
        try:
            os.getxattr(path, name, follow_symlinks=False)
            return True
        except OSError:
            continue
    return False


def dir_is_opaque(layer: Layer, relpath: bytes) -> tuple[bool, bool]:
    """(opaque, has_xattr_whiteouts) of one layer's directory, from its xattrs."""
    with layer.at(relpath) as path:
        return opaque_state(read_xattrs(path, _OPAQUE_XATTR_SET))


_NAME_ROOM = 256


def scan_dir(layer: Layer, relpath: bytes, *, is_root: bool = False) -> ScannedDir:
    """List one directory of one layer and classify its entries."""
    try:
        # Room for the entries' names: their DirEntry paths start with this one.
        with layer.at(relpath, room=_NAME_ROOM) as path:
            return _scan_dir(layer, path, is_root=is_root,
                             deep=path != layer.path_of(relpath))
    except OSError as exc:
        raise LayerError.from_os_error(layer, relpath, exc) from exc


def _scan_dir(layer: Layer, path: bytes, *, is_root: bool, deep: bool) -> ScannedDir:
    """``scan_dir`` of the directory at ``path``; ``deep``: the path is valid only
    for this call, so every entry's lstat is taken now (a DirEntry keeps it)."""
    dir_xattrs = read_xattrs(path, _DIR_XATTR_SET)
    opaque, xwhiteouts = opaque_state(dir_xattrs)
    entries: dict[bytes, bool] = {}
    whiteouts: set[bytes] = set()
    dirents: dict[bytes, os.DirEntry] = {}
    with os.scandir(path) as it:
        for entry in it:
            name = entry.name
            marker = None if layer.upper else classify_marker(name)
            if marker is not None:
                kind, target = marker
                if kind == MarkerName.OPAQUE:
                    opaque = True
                elif kind == MarkerName.WHITEOUT:
                    whiteouts.add(target)
                continue
            if entry.is_dir(follow_symlinks=False):
                entries[name] = True
                dirents[name] = entry
                continue
            if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                st = entry.stat(follow_symlinks=False)
                if is_whiteout_device(st.st_mode, st.st_rdev):
                    whiteouts.add(name)
                    continue
            elif xwhiteouts and entry.is_file(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_size == 0 and _has_xwhiteout(
                    entry.path
                ):
                    whiteouts.add(name)
                    continue
            entries[name] = False
            dirents[name] = entry
    if deep:
        for entry in dirents.values():
            entry.stat(follow_symlinks=False)
    # The kernel never treats a layer's root as opaque: the root merges all layers.
    if is_root:
        opaque = False
    return ScannedDir(DirListing(entries, whiteouts, opaque), dirents,
                      None if is_root else redirect_of(dir_xattrs))


def probe_path(layer: Layer, relpath: bytes) -> Probe:
    """What ``layer`` holds at ``relpath``, walking it from the layer's root as the
    kernel's lookup of a redirect does: a whiteout or a non-directory on the way
    ends the search; an opaque directory on the way hides the layers below
    (unless an absolute redirect after it points elsewhere); every redirect met
    is reported, since each rewrites the path looked up below."""
    parts = [part for part in relpath.split(b"/") if part]
    current = b""
    stop = False
    redirects: list[tuple[int, bytes]] = []
    for number, part in enumerate(parts):
        parent = current
        current = parent + b"/" + part if parent else part
        met = tuple(redirects)
        try:
            with layer.at(current) as path:
                st = os.lstat(path)
        except FileNotFoundError:
            marker = parent + b"/" + WHITEOUT_PREFIX + part if parent else WHITEOUT_PREFIX + part
            if not layer.upper and _lexists(layer, marker):
                return Probe(WHITEOUT, redirects=met)
            return Probe(MISSING, redirects=met)
        except NotADirectoryError:
            return Probe(OTHER, redirects=met)
        if is_whiteout_device(st.st_mode, st.st_rdev):
            return Probe(WHITEOUT, redirects=met)
        if not stat.S_ISDIR(st.st_mode):
            return Probe(OTHER, redirects=met)
        with layer.at(current) as path:
            xattrs = read_xattrs(path, _DIR_XATTR_SET)
        if opaque_state(xattrs)[0] or (
                not layer.upper and _lexists(layer, current + b"/" + OPAQUE_MARKER)):
            stop = True
        redirect = redirect_of(xattrs)
        if redirect is not None:
            redirects.append((number, redirect))
            if redirect.startswith(b"/") and number < len(parts) - 1:
                stop = False
    return Probe(DIR, stop, tuple(redirects)) if parts else Probe(MISSING)


def _lexists(layer: Layer, relpath: bytes) -> bool:
    """Whether ``relpath`` exists in ``layer`` (a symlink too), however deep it is."""
    try:
        with layer.at(relpath) as path:
            return os.path.lexists(path)
    except OSError:
        return False
