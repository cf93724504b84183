"""What an unpacked tar layer could not store on disk, kept beside it as ``meta.json``.

The unpacker (:mod:`layerfs.unpack`) writes a layer's entries into
``<cache>/layers/<chainID hex>/root/`` and everything the filesystem cannot
hold for the user running it into ``<cache>/layers/<chainID hex>/meta.json``:

- ``owner``: uid/gid that every entry of the layer shows (set when unpacked
  without root: the files on disk belong to the user, the image's owner is
  usually 0:0); entries listed in ``stat`` override it.
- ``stat``: per path, the ``[uid, gid, st_mode, rdev]`` the entry shows when
  it differs from the disk (foreign owners, setuid/setgid/sticky bits, modes
  the user could not work with such as 0000, and device nodes, stored on disk
  as empty regular files).
- ``whiteouts``: per directory, names deleted from lower layers whose
  ``.wh.`` marker would exceed NAME_MAX (FORMATS.md 1.4.5); shorter
  whiteouts and opaque markers stay on disk as ``.wh.`` files, which the
  scanner already honours.
- ``xattrs``: per path, xattrs that could not be set (``security.*``,
  ``trusted.*`` as a user; any when the filesystem lacks xattr support).
- ``implied_dirs``: directories the layer does not contain but that had to
  be created as parents of its entries (``""`` = the layer root had no
  entry). FORMATS.md 8.5: their metadata should come from the layer below.

Paths are layer-relative bytes (``b""`` = the root). In JSON they are
``os.fsdecode`` strings and xattr values base64. The query methods are pure
so the index can apply a sidecar without I/O.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layer import Layer

SIDECAR_NAME = "meta.json"
SIDECAR_VERSION = 1

StatFields = tuple[int, int, int, int]
"""(uid, gid, st_mode, rdev)"""


@dataclass
class Sidecar:
    owner: tuple[int, int] | None = None
    stats: dict[bytes, StatFields] = field(default_factory=dict)
    whiteouts: dict[bytes, set[bytes]] = field(default_factory=dict)
    xattrs: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    implied_dirs: set[bytes] = field(default_factory=set)
    info: dict = field(default_factory=dict)
    """Facts about the layer (digests, sizes, entry count) for inspect and cache ls, and
    whether its entries carry xattrs (``has_xattrs``: see layerfs/xattrcheck.py)."""

    # -- queries (pure) ------------------------------------------------------

    def stat_for(self, relpath: bytes, st: os.stat_result) -> os.stat_result:
        """The stat an entry shows, given the stat of its file on disk."""
        fields = self.stats.get(relpath)
        if fields is None and self.owner is None:
            return st
        if fields is not None:
            uid, gid, mode, rdev = fields
        else:
            assert self.owner is not None
            (uid, gid), mode, rdev = self.owner, st.st_mode, st.st_rdev
        values = list(st)
        values[stat.ST_MODE] = mode
        values[stat.ST_UID] = uid
        values[stat.ST_GID] = gid
        return os.stat_result(values, {
            "st_atime_ns": st.st_atime_ns, "st_mtime_ns": st.st_mtime_ns,
            "st_ctime_ns": st.st_ctime_ns, "st_blocks": st.st_blocks,
            "st_blksize": st.st_blksize, "st_rdev": rdev,
        })

    def whiteouts_in(self, reldir: bytes) -> frozenset[bytes]:
        """Names of directory ``reldir`` that this layer deletes below it (beyond its markers)."""
        return frozenset(self.whiteouts.get(reldir, ()))

    def xattrs_of(self, relpath: bytes) -> dict[bytes, bytes]:
        """Xattrs the entry shows in addition to those on disk."""
        return self.xattrs.get(relpath, {})

    def is_implied(self, relpath: bytes) -> bool:
        return relpath in self.implied_dirs

    def is_empty(self) -> bool:
        return not (self.owner or self.stats or self.whiteouts or self.xattrs
                    or self.implied_dirs)

    # -- building (used by the unpacker) ---------------------------------------

    def forget(self, relpath: bytes) -> None:
        """Drop everything recorded for ``relpath`` and below (the entry was replaced)."""
        prefix = relpath + b"/"

        def gone(path: bytes) -> bool:
            return path == relpath or path.startswith(prefix) or not relpath

        for table in (self.stats, self.xattrs, self.whiteouts):
            for path in [p for p in table if gone(p)]:
                del table[path]
        self.implied_dirs = {p for p in self.implied_dirs if not gone(p)}

    # -- JSON ------------------------------------------------------------------

    def to_json(self) -> dict:
        def enc(path: bytes) -> str:
            return os.fsdecode(path)

        return {
            "version": SIDECAR_VERSION,
            "info": self.info,
            "owner": list(self.owner) if self.owner else None,
            "stat": {enc(p): list(v) for p, v in sorted(self.stats.items())},
            "whiteouts": {enc(d): sorted(enc(n) for n in names)
                          for d, names in sorted(self.whiteouts.items())},
            "xattrs": {enc(p): {enc(k): base64.b64encode(v).decode() for k, v in x.items()}
                       for p, x in sorted(self.xattrs.items())},
            "implied_dirs": sorted(enc(p) for p in self.implied_dirs),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Sidecar":
        if data.get("version") != SIDECAR_VERSION:
            raise ValueError(f"unknown sidecar version {data.get('version')!r}")
        dec = os.fsencode
        owner = data.get("owner")
        return cls(
            owner=(int(owner[0]), int(owner[1])) if owner else None,
            stats={dec(p): tuple(int(x) for x in v)  # type: ignore[misc]
                   for p, v in data.get("stat", {}).items()},
            whiteouts={dec(d): {dec(n) for n in names}
                       for d, names in data.get("whiteouts", {}).items()},
            xattrs={dec(p): {dec(k): base64.b64decode(v) for k, v in x.items()}
                    for p, x in data.get("xattrs", {}).items()},
            implied_dirs={dec(p) for p in data.get("implied_dirs", [])},
            info=data.get("info", {}),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="ascii") as out:
            json.dump(self.to_json(), out, ensure_ascii=True, separators=(",", ":"))


def load_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    with open(path, encoding="ascii") as source:
        return Sidecar.from_json(json.load(source))


def sidecar_of(layer: "Layer") -> Sidecar | None:
    """The sidecar of an unpacked tar layer, or None for a plain directory layer."""
    return load_sidecar(layer.sidecar) if layer.sidecar else None
