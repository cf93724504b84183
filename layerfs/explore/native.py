"""Overlay-native copies of layers, so the kernel overlay can mount what layerfs mounts.

The kernel reads only its own encoding: 0/0 character devices as whiteouts and
``trusted.overlay.opaque=y``. Layers unpacked from tar keep ``.wh.`` markers and
a sidecar (owners, modes, devices, long whiteouts, xattrs the disk could not
hold); rootless stores carry ``user.overlay.opaque`` or override_stat xattrs.
:func:`native_layers` returns each layer's directory as is when the kernel can
read it, else a converted copy, as Docker and containers-storage convert on
unpack (FORMATS.md 8.1). Directories an unpacker only implied take their
metadata from the layer below, as containerd's unpacker does (FORMATS.md 8.5) and
as the index does.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from ..errors import LayerfsError
from ..index import PathIndex
from ..metadata import parse_override_stat
from ..scan import read_xattrs
from ..sidecar import Sidecar
from ..whiteouts import (
    OPAQUE_XATTRS,
    OVERRIDE_STAT_XATTR,
    MarkerName,
    classify_marker,
)

TRUSTED_OPAQUE = b"trusted.overlay.opaque"
_FOREIGN_OPAQUE = tuple(name for name in OPAQUE_XATTRS if name != TRUSTED_OPAQUE)


def _needs_copy(root: bytes, sidecar: Sidecar | None) -> bool:
    if sidecar is not None and not sidecar.is_empty():
        return True
    for dirpath, dirnames, filenames in os.walk(root):
        if any(name.startswith(b".wh.") for name in dirnames + filenames):
            return True
        values = read_xattrs(dirpath, frozenset(_FOREIGN_OPAQUE + (OVERRIDE_STAT_XATTR,)))
        if values:
            return True
    return False


def native_layers(index: PathIndex, workdir: Path) -> list[str]:
    """Each layer's directory in the kernel's encoding, bottom first (copies in ``workdir``)."""
    result = []
    for position, layer in enumerate(index.layers):
        sidecar = index.views[position].sidecar
        if not _needs_copy(layer.root_bytes, sidecar):
            result.append(layer.root)
            continue
        target = workdir / f"native-{position}"
        copy = subprocess.run(["cp", "-a", "--reflink=auto", "--", layer.root, str(target)],
                              capture_output=True, text=True)
        if copy.returncode != 0:
            raise LayerfsError(f"cannot copy layer {layer.describe()} for the kernel overlay: "
                               f"{copy.stderr.strip()}")
        _convert(os.fsencode(target), sidecar)
        _inherit_implied(index, position, os.fsencode(target), sidecar)
        result.append(str(target))
    return result


def _times(path: bytes) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns


def _convert(root: bytes, sidecar: Sidecar | None) -> None:
    dir_times: dict[bytes, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dir_times[dirpath] = _times(dirpath)
        rel_dir = os.path.relpath(dirpath, root) if dirpath != root else b""
        names = set(dirnames) | set(filenames)
        for name in sorted(names):
            marker = classify_marker(name)
            if marker is None:
                continue
            kind, target = marker
            os.unlink(os.path.join(dirpath, name))
            if kind == MarkerName.OPAQUE:
                os.setxattr(dirpath, TRUSTED_OPAQUE, b"y")
            elif kind == MarkerName.WHITEOUT:
                _whiteout(dirpath, target, names)
        if sidecar is not None:
            for target in sidecar.whiteouts_in(rel_dir):
                _whiteout(dirpath, target, names)
        dirnames[:] = [d for d in dirnames if not d.startswith(b".wh.")]
        _fix_opaque_xattrs(dirpath)
    if sidecar is not None:
        _apply_sidecar(root, sidecar)
    _apply_override_stat(root)
    for path, (atime, mtime) in sorted(dir_times.items(), key=lambda item: -len(item[0])):
        os.utime(path, ns=(atime, mtime), follow_symlinks=False)


def _whiteout(dirpath: bytes, target: bytes, names: set[bytes]) -> None:
    full = os.path.join(dirpath, target)
    if target in names or os.path.lexists(full):
        # The layer deletes the name below and holds its own: a dir then hides the lower one.
        if os.path.isdir(full) and not os.path.islink(full):
            os.setxattr(full, TRUSTED_OPAQUE, b"y")
        return
    os.mknod(full, stat.S_IFCHR | 0o600, 0)


def _fix_opaque_xattrs(path: bytes) -> None:
    values = read_xattrs(path, frozenset(_FOREIGN_OPAQUE))
    for name, value in values.items():
        os.removexattr(path, name, follow_symlinks=False)
        if value.rstrip(b"\0") == b"y":
            os.setxattr(path, TRUSTED_OPAQUE, b"y")


def _apply_sidecar(root: bytes, sidecar: Sidecar) -> None:
    def full(relpath: bytes) -> bytes:
        return os.path.join(root, relpath) if relpath else root

    if sidecar.owner is not None:
        uid, gid = sidecar.owner
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [b""] + dirnames + filenames if dirpath == root else dirnames + filenames:
                path = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    continue
                os.chown(path, uid, gid, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(path, stat.S_IMODE(st.st_mode))
    for relpath, (uid, gid, mode, rdev) in sidecar.stats.items():
        path = full(relpath)
        st = os.lstat(path)
        if stat.S_IFMT(mode) != stat.S_IFMT(st.st_mode):
            times = (st.st_atime_ns, st.st_mtime_ns)
            os.unlink(path)
            os.mknod(path, mode, rdev)
            os.utime(path, ns=times, follow_symlinks=False)
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            os.chmod(path, stat.S_IMODE(mode))
    for relpath, values in sidecar.xattrs.items():
        for name, value in values.items():
            os.setxattr(full(relpath), name, value, follow_symlinks=False)


def _apply_override_stat(root: bytes) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [b""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            values = read_xattrs(path, frozenset({OVERRIDE_STAT_XATTR}))
            if not values:
                continue
            os.removexattr(path, OVERRIDE_STAT_XATTR, follow_symlinks=False)
            override = parse_override_stat(values[OVERRIDE_STAT_XATTR])
            if override is None:
                continue
            st = os.lstat(path)
            mode, rdev = override.apply(st.st_mode, st.st_rdev)
            if stat.S_IFMT(mode) != stat.S_IFMT(st.st_mode):
                os.unlink(path)
                os.mknod(path, mode, rdev)
            os.chown(path, override.uid, override.gid, follow_symlinks=False)
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode))


def _inherit_implied(index: PathIndex, position: int, root: bytes,
                     sidecar: Sidecar | None) -> None:
    """Give implied directories the metadata of the layer copy the index shows for them."""
    if sidecar is None or not sidecar.implied_dirs:
        return
    for relpath in sorted(sidecar.implied_dirs, key=lambda p: -p.count(b"/")):
        source = _real_copy_below(index, position, relpath)
        if source is None:
            continue
        below, source_path = source
        st = index.views[below].stat(relpath)
        path = os.path.join(root, relpath) if relpath else root
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        for name, value in read_xattrs(source_path).items():
            if not name.startswith((b"trusted.overlay.", b"user.overlay.")):
                os.setxattr(path, name, value, follow_symlinks=False)
        lower_sidecar = index.views[below].sidecar
        if lower_sidecar is not None:
            for name, value in lower_sidecar.xattrs_of(relpath).items():
                os.setxattr(path, name, value, follow_symlinks=False)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _real_copy_below(index: PathIndex, position: int, relpath: bytes) -> tuple[int, bytes] | None:
    for below in range(position - 1, -1, -1):
        view = index.views[below]
        if not view.has_dir(relpath) or view.is_implied(relpath):
            continue
        return below, index.layers[below].path_of(relpath)
    return None
