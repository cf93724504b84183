"""One layer as the merge sees it (what fuse-overlayfs calls a data source).

A :class:`LayerView` reads one layer and nothing else: one directory's names
and whiteout markers, an entry's attributes, xattrs and symlink target, each
corrected by what the layer recorded beside its files: its sidecar (what an
unprivileged unpack could not store: owners, modes, devices, xattrs, implied
parent dirs, see :mod:`layerfs.sidecar`) and containers-storage's
``override_stat`` xattr. The loader (:mod:`layerfs.loader`) builds the merged
tree from these views; the explore tools (which, diff, usage) ask them about
one layer's own entries.
"""

from __future__ import annotations

import errno
import os
import stat

from .backing import backing_io
from .errors import LayerError
from .layer import Layer
from .metadata import parse_override_stat
from .redirects import Probe
from .scan import ScannedDir, probe_path, read_xattrs, scan_dir
from .sidecar import Sidecar, sidecar_of
from .whiteouts import OVERRIDE_STAT_XATTR, backing_xattr_name, visible_xattr_name

_OVERRIDE = frozenset({OVERRIDE_STAT_XATTR})


class LayerView:
    """The entries of one layer, with its recorded metadata applied."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.sidecar = _load_sidecar(layer)
        self._overrides = _uses_override_stat(layer)

    def listing(self, relpath: bytes, *, is_root: bool | None = None) -> ScannedDir:
        """The layer's copy of directory ``relpath`` as the merge reads it: its names,
        and the whiteouts of its markers and of its recorded metadata."""
        result = scan_dir(self.layer, relpath, is_root=not relpath if is_root is None else is_root)
        if self.sidecar is not None:
            result.listing.whiteouts = set(result.listing.whiteouts) | self.sidecar.whiteouts_in(relpath)
        return result

    def stat(self, relpath: bytes) -> os.stat_result:
        """What an entry shows: its lstat with the layer's recorded metadata applied
        (the caller knows the parent is a real directory of the layer)."""
        try:
            with self.layer.at(relpath) as path:
                st = os.lstat(path)
        except OSError as exc:
            raise LayerError.from_os_error(self.layer, relpath, exc) from exc
        return self.shown_stat(relpath, st)

    def stat_entry(self, relpath: bytes, entry: os.DirEntry) -> os.stat_result:
        """:meth:`stat` of an entry met in :meth:`listing` (its lstat is cached)."""
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise LayerError.from_os_error(self.layer, relpath, exc) from exc
        return self.shown_stat(relpath, st)

    def root_stat(self) -> os.stat_result:
        """The root's :meth:`stat`; LayerError if the layer is not a directory."""
        try:
            st = os.lstat(self.layer.root_bytes)
        except OSError as exc:
            raise LayerError.from_os_error(self.layer, b"", exc) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{self.layer.root}: layer {self.layer.describe()} is not a directory")
        return self.shown_stat(b"", st)

    def shown_stat(self, relpath: bytes, st: os.stat_result) -> os.stat_result:
        """An entry's stat on disk, corrected by the layer's recorded metadata."""
        if self._overrides:
            with self.layer.at(relpath) as path:
                st = _apply_override(path, st)
        if self.sidecar is not None:
            st = self.sidecar.stat_for(relpath, st)
        return st

    def is_implied(self, relpath: bytes) -> bool:
        """Whether the unpacker made directory ``relpath`` only as a parent of an entry
        (its metadata then comes from below, FORMATS.md 8.5)."""
        return self.sidecar is not None and self.sidecar.is_implied(relpath)

    def has_dir(self, relpath: bytes) -> bool:
        """Whether ``relpath`` is a real directory in the layer (no component a symlink)."""
        path = b""
        for part in relpath.split(b"/") if relpath else ():
            path = path + b"/" + part if path else part
            try:
                with self.layer.at(path) as full:
                    if not stat.S_ISDIR(os.lstat(full).st_mode):
                        return False
            except OSError:
                return False
        return True

    def probe(self, relpath: bytes) -> Probe:
        """What the layer holds at ``relpath`` for following a redirect."""
        return probe_path(self.layer, relpath)

    def overlay_xattrs(self, relpath: bytes, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
        """The ``wanted`` xattrs of an entry as stored (overlay's own included)."""
        with self.layer.at(relpath) as path:
            return read_xattrs(path, wanted)

    def list_xattrs(self, relpath: bytes) -> list[bytes]:
        """The xattr names an entry shows: its own, less overlay-private ones, and
        the recorded ones."""
        with backing_io(self.layer, relpath):
            with self.layer.at(relpath) as path:
                shown = shown_xattr_names(path)
        if self.sidecar is not None:
            shown += [name for name in self.sidecar.xattrs_of(relpath) if name not in shown]
        return shown

    def get_xattr(self, relpath: bytes, name: bytes) -> bytes:
        """The value of an entry's xattr ``name``; OSError(ENODATA) if it has none."""
        if self.sidecar is not None and name in self.sidecar.xattrs_of(relpath):
            return self.sidecar.xattrs_of(relpath)[name]
        with backing_io(self.layer, relpath):
            with self.layer.at(relpath) as path:
                return shown_xattr(path, name)

    def read_link(self, relpath: bytes) -> bytes:
        with backing_io(self.layer, relpath):
            with self.layer.at(relpath) as path:
                return os.readlink(path)


def shown_xattr_names(path: bytes) -> list[bytes]:
    """The xattr names the entry at ``path`` shows: its own, less overlay-private ones."""
    names = [visible_xattr_name(os.fsencode(name))
             for name in os.listxattr(path, follow_symlinks=False)]
    return [name for name in names if name is not None]


def shown_xattr(path: bytes, name: bytes) -> bytes:
    """The value of the xattr shown as ``name`` of the entry at ``path``;
    OSError(ENODATA) if it has none."""
    backing_name = backing_xattr_name(name)
    if backing_name is None:
        raise OSError(errno.ENODATA, "no such attribute")
    return os.getxattr(path, backing_name, follow_symlinks=False)


def _uses_override_stat(layer: Layer) -> bool:
    # containers-storage with force_mask marks every entry, the root included.
    try:
        return OVERRIDE_STAT_XATTR in read_xattrs(layer.root_bytes, _OVERRIDE)
    except OSError:
        return False


def _load_sidecar(layer: Layer) -> Sidecar | None:
    try:
        return sidecar_of(layer)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LayerError(f"{layer.sidecar}: unreadable metadata of layer "
                         f"{layer.describe()}: {exc}") from exc


def _apply_override(path: bytes, st: os.stat_result) -> os.stat_result:
    values = read_xattrs(path, _OVERRIDE)
    override = parse_override_stat(values.get(OVERRIDE_STAT_XATTR, b""))
    if override is None:
        return st
    mode, rdev = override.apply(st.st_mode, st.st_rdev)
    fields = list(st)
    fields[stat.ST_MODE] = mode
    fields[stat.ST_UID] = override.uid
    fields[stat.ST_GID] = override.gid
    return os.stat_result(fields, {
        "st_atime_ns": st.st_atime_ns, "st_mtime_ns": st.st_mtime_ns,
        "st_ctime_ns": st.st_ctime_ns, "st_blocks": st.st_blocks,
        "st_blksize": st.st_blksize, "st_rdev": rdev,
    })
