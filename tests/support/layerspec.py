"""Describe a layer stack once, write it in any whiteout encoding.

A stack is a list of layers (bottom first); a layer maps paths to items.
``materialize`` writes one layer as a real directory in one of the forms:

- ``native``: whiteouts as 0/0 char devices, opaque dirs with
  ``trusted.overlay.opaque=y`` (what the kernel overlay reads);
- ``user``: as native, opaque with ``user.overlay.opaque=y`` (kernel ``userxattr``);
- ``oci``: ``.wh.NAME`` files and ``.wh..wh..opq`` markers (OCI tar form);
- ``xwhiteout``: whiteouts as zero-size files with ``trusted.overlay.whiteout``
  in a directory marked ``trusted.overlay.opaque=x`` (kernel >= 6.7).

The same stack written natively and mounted by the kernel is the reference
for layerfs mounting it in any form.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

FIXED_MTIME_NS = 1_600_000_000_123_456_789
FORMS = ("native", "user", "oci", "xwhiteout")


@dataclass
class File:
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Dir:
    mode: int = 0o755
    opaque: bool = False
    uid: int = 0
    gid: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Symlink:
    target: bytes


@dataclass
class Hardlink:
    to: bytes
    """Path of a File in the same layer."""


@dataclass
class Special:
    kind: str  # "fifo", "chr", "blk", "sock"
    rdev: int = 0
    mode: int = 0o644


@dataclass
class Whiteout:
    pass


Item = Union[File, Dir, Symlink, Hardlink, Special, Whiteout]
LayerSpec = dict[bytes, Item]


def _split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def _ensure_parents(root: bytes, path: bytes) -> None:
    parent, _ = _split(path)
    if parent:
        os.makedirs(os.path.join(root, parent), mode=0o755, exist_ok=True)


def _set_xattrs(path: bytes, xattrs: dict[bytes, bytes]) -> None:
    for name, value in xattrs.items():
        os.setxattr(path, name, value, follow_symlinks=False)


def _make_special(full: bytes, item: Special) -> None:
    if item.kind == "fifo":
        os.mkfifo(full, item.mode)
    elif item.kind == "sock":
        import socket

        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(full)
        finally:
            sock.close()
        os.chmod(full, item.mode)
    else:
        kind = stat.S_IFCHR if item.kind == "chr" else stat.S_IFBLK
        os.mknod(full, kind | item.mode, item.rdev)


def _whiteout(root: bytes, path: bytes, form: str, xwhiteout_dirs: set[bytes],
              opaque_paths: set[bytes]) -> None:
    full = os.path.join(root, path)
    parent, name = _split(path)
    if form == "xwhiteout" and (parent in opaque_paths or not parent):
        # An opaque ("y") dir cannot also announce xwhiteouts ("x"), and the
        # kernel takes no mark on the layer root: use the device form there.
        form = "native"
    if form == "oci":
        with open(os.path.join(root, parent, b".wh." + name) if parent
                  else os.path.join(root, b".wh." + name), "wb"):
            pass
    elif form == "xwhiteout":
        with open(full, "wb"):
            pass
        os.setxattr(full, b"trusted.overlay.whiteout", b"y", follow_symlinks=False)
        xwhiteout_dirs.add(parent)
    else:
        os.mknod(full, stat.S_IFCHR | 0o000, 0)


def _mark_opaque(full: bytes, form: str) -> None:
    if form == "oci":
        with open(os.path.join(full, b".wh..wh..opq"), "wb"):
            pass
    elif form == "user":
        os.setxattr(full, b"user.overlay.opaque", b"y")
    else:
        os.setxattr(full, b"trusted.overlay.opaque", b"y")


def materialize(layer: LayerSpec, dest: Path, form: str = "native") -> Path:
    """Write ``layer`` into the (new, empty) directory ``dest`` in the given form."""
    assert form in FORMS
    dest.mkdir(parents=True, exist_ok=True)
    root = os.fsencode(dest)
    xwhiteout_dirs: set[bytes] = set()
    opaque_dirs: list[bytes] = []
    chowns: list[tuple[bytes, int, int]] = []
    opaque_paths = {p for p, item in layer.items() if isinstance(item, Dir) and item.opaque}
    for path in sorted(layer, key=lambda p: (p.count(b"/"), p)):
        item = layer[path]
        full = os.path.join(root, path)
        _ensure_parents(root, path)
        if isinstance(item, Dir):
            os.makedirs(full, exist_ok=True)
            os.chmod(full, item.mode)
            _set_xattrs(full, item.xattrs)
            chowns.append((full, item.uid, item.gid))
            if item.opaque:
                opaque_dirs.append(full)
        elif isinstance(item, File):
            with open(full, "wb") as f:
                f.write(item.content)
            os.chmod(full, item.mode)
            _set_xattrs(full, item.xattrs)
            chowns.append((full, item.uid, item.gid))
        elif isinstance(item, Symlink):
            os.symlink(item.target, full)
        elif isinstance(item, Special):
            _make_special(full, item)
        elif isinstance(item, Whiteout):
            _whiteout(root, path, form, xwhiteout_dirs, opaque_paths)
    # Hard links after their targets exist.
    for path, item in layer.items():
        if isinstance(item, Hardlink):
            _ensure_parents(root, path)
            os.link(os.path.join(root, item.to), os.path.join(root, path))
    for full in opaque_dirs:
        _mark_opaque(full, form)
    for parent in xwhiteout_dirs:
        os.setxattr(os.path.join(root, parent), b"trusted.overlay.opaque", b"x")
    if os.geteuid() == 0:
        for full, uid, gid in chowns:
            mode = os.lstat(full).st_mode
            os.chown(full, uid, gid, follow_symlinks=False)
            os.chmod(full, stat.S_IMODE(mode))  # chown clears setuid bits
    _fix_times(root)
    return dest


def _fix_times(root: bytes) -> None:
    """Give every entry the same mtime, children before parents, so forms compare equal."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(FIXED_MTIME_NS, FIXED_MTIME_NS),
                     follow_symlinks=False)
    os.utime(root, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))


def materialize_stack(stack: list[LayerSpec], base: Path, form: str) -> list[Path]:
    """Write every layer under ``base/<form>/<n>``; returns the dirs bottom first."""
    return [materialize(layer, base / form / str(n), form) for n, layer in enumerate(stack)]
