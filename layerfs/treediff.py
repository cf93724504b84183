"""Snapshot a directory tree and report how two snapshots differ.

The comparison behind the project's differential tests and ``layerfs
compare``: every property a user can observe through the VFS (type, mode,
owner, size, mtime, rdev, link target, xattrs, content hash, nlink,
hard-link groups, names) for every path, walked without following symlinks.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, fields
from typing import Iterable, Iterator

import xxhash

from .scan import read_xattrs

_CHUNK = 1 << 20
_TYPE_CHARS = {
    stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
    stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s",
}
# Properties compared by default; atime and ctime are the observer's own doing.
DEFAULT_PROPERTIES = ("type", "mode", "uid", "gid", "size", "mtime_ns", "rdev", "target",
                      "xattrs", "content", "nlink", "links")


@dataclass
class Entry:
    type: str
    mode: int
    uid: int
    gid: int
    size: int | None
    mtime_ns: int
    rdev: int
    nlink: int
    target: bytes | None = None
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    content: str | None = None
    links: tuple[bytes, ...] = ()
    """Other paths of the same hard-link group, sorted (files only)."""
    ino: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Difference:
    path: bytes
    property: str
    left: object
    right: object

    def __str__(self) -> str:
        shown = os.fsdecode(self.path) or "/"
        if self.property == "presence":
            return f"{shown}: only in {'left' if self.right is None else 'right'}"
        return f"{shown}: {self.property} differs: {self.left!r} != {self.right!r}"


def content_hash(path: bytes) -> str:
    digest = xxhash.xxh3_128()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _xattrs(path: bytes, skip: frozenset[bytes]) -> dict[bytes, bytes]:
    return {name: value for name, value in read_xattrs(path).items()
            if name not in skip and not any(name.startswith(p) for p in skip if p.endswith(b"."))}


# A name readdir lists but lstat says does not exist. The kernel overlay shows
# whiteouts this way in a directory only one layer provides (it passes such a
# "real" directory's listing through unfiltered, see ovl_dir_is_real()).
PHANTOM = "!"


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result | None]]:
    yield b"", os.lstat(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = rel + b"/" + entry.name if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                yield child, None
                continue
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)


def snapshot(root: str | bytes, *, hash_content: bool = True,
             skip_xattrs: Iterable[bytes] = ()) -> dict[bytes, Entry]:
    """Every path under ``root`` (b"" is the root itself) with its observable properties."""
    root_b = os.fsencode(root)
    skip = frozenset(skip_xattrs)
    tree: dict[bytes, Entry] = {}
    by_inode: dict[int, list[bytes]] = {}
    for rel, st in _walk(root_b):
        if st is None:
            tree[rel] = Entry(type=PHANTOM, mode=0, uid=0, gid=0, size=None, mtime_ns=0,
                              rdev=0, nlink=0)
            continue
        full = os.path.join(root_b, rel) if rel else root_b
        kind = _TYPE_CHARS.get(stat.S_IFMT(st.st_mode), "?")
        entry = Entry(
            type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
            size=st.st_size, mtime_ns=st.st_mtime_ns,
            rdev=st.st_rdev if kind in "cb" else 0, nlink=st.st_nlink, ino=st.st_ino,
            xattrs=_xattrs(full, skip),
        )
        if kind == "l":
            entry.target = os.readlink(full)
        elif kind == "f" and hash_content:
            entry.content = content_hash(full)
        if kind != "d" and st.st_nlink > 1:
            by_inode.setdefault(st.st_ino, []).append(rel)
        tree[rel] = entry
    for group in by_inode.values():
        for rel in group:
            tree[rel].links = tuple(sorted(p for p in group if p != rel))
    return tree


def diff(left: dict[bytes, Entry], right: dict[bytes, Entry],
         properties: Iterable[str] = DEFAULT_PROPERTIES) -> list[Difference]:
    """Every difference between two snapshots, in path order."""
    wanted = [f.name for f in fields(Entry) if f.name in set(properties)]
    found: list[Difference] = []
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path), right.get(path)
        if a is None or b is None:
            found.append(Difference(path, "presence", a and a.type, b and b.type))
            continue
        for name in wanted:
            va, vb = getattr(a, name), getattr(b, name)
            if va != vb:
                found.append(Difference(path, name, va, vb))
    return found
