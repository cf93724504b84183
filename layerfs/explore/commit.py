"""``layerfs commit``: an overlay upper dir (layerfs's or the kernel's) as an OCI layer tar.

The upper dir is walked in sorted path order (parents first, names as bytes) and
each entry becomes a tar member, translated from the kernel's encoding to the
OCI changeset form (FORMATS.md 1.3, 8.1):

- a 0/0 character device, or an xattr whiteout, becomes an empty ``.wh.NAME``;
- an opaque directory (``{trusted,user}.overlay.opaque=y``,
  ``user.fuseoverlayfs.opaque``) gets a ``.wh..wh..opq`` member after it;
- a renamed directory (``overlay.redirect``) is resolved: its lower contents live
  elsewhere, so it is written whole, as an opaque directory holding the merged view
  of it (read through :class:`~layerfs.index.PathIndex` over the lower layers plus
  the upper dir, which follows redirects as the kernel does). This needs the lower
  layers (``--lower``, or the base image of ``--into``);
- hard links within the upper dir stay hard links; sockets cannot be stored in tar
  and are skipped with a warning; ``metacopy`` entries (data only in a lower layer)
  are refused;
- xattrs travel as PAX ``SCHILY.xattr.*`` records, overlay-private ones dropped;
- owners are numeric (no user/group names), mtimes whole seconds or ``--mtime``.

The same upper dir always gives the same bytes (gzip without name or time).
``--into`` then appends the blob to an OCI layout as a new image
(:mod:`.ocilayout`).

JSON schema (``--json``)::

    {"layer": {"path": str | null,          # -o FILE (null with only --into)
               "media_type": str, "compression": "gzip|zstd|none",
               "digest": str, "diff_id": str, "size": int, "uncompressed_size": int,
               "entries": int, "whiteouts": int, "opaque_dirs": int,
               "skipped": [str]},           # sockets, which tar cannot hold
     "image": {"layout": str, "tag": str, "manifest": str, "config": str,
               "layers": int} | null}
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import sys
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ..errors import LayerfsError
from ..index import Node, PathIndex
from ..oci.mediatypes import OCI_GZIP_LAYER, OCI_LAYER, OCI_ZSTD_LAYER
from ..progress import Board, Row
from ..scan import read_xattrs
from ..sizes import plural
from ..whiteouts import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    WHITEOUT_XATTRS,
    is_whiteout_device,
    opaque_state,
    redirect_of,
    visible_xattr_name,
)

METACOPY_XATTRS = (b"trusted.overlay.metacopy", b"user.overlay.metacopy")
_CHUNK = 1 << 20
COMPRESSIONS = ("gzip", "zstd", "none")


@dataclass
class Member:
    """One tar member to write."""

    path: bytes
    """Layer-relative (b"" = the root)."""
    kind: str
    """``f`` file, ``d`` dir, ``l`` symlink, ``c``/``b`` device, ``p`` fifo,
    ``w`` whiteout or opaque marker (empty file), ``h`` hard link."""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    rdev: int = 0
    target: bytes = b""
    """Symlink target, or the path a hard link points to."""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    open: Callable[[], BinaryIO] | None = None


@dataclass
class CommittedLayer:
    """The tar layer a commit wrote: where, how compressed, its digests and counts."""

    path: str
    compression: str
    media_type: str
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int
    entries: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped: list[str] = field(default_factory=list)


class CommitError(LayerfsError):
    pass


def compression_for(path: str, forced: str | None) -> str:
    if forced:
        return forced
    if path.endswith((".gz", ".tgz")):
        return "gzip"
    if path.endswith((".zst", ".zstd")):
        return "zstd"
    return "none"


def media_type_for(compression: str) -> str:
    return {"gzip": OCI_GZIP_LAYER, "zstd": OCI_ZSTD_LAYER, "none": OCI_LAYER}[compression]


# -- reading the upper dir -------------------------------------------------------------

def _shown_xattrs(path: bytes) -> dict[bytes, bytes]:
    shown = {}
    for name, value in read_xattrs(path).items():
        visible = visible_xattr_name(name)
        if visible is not None:
            shown[visible] = value
    return shown


def _opener(path: bytes) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")


def _kind_of(mode: int) -> str | None:
    return {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
            stat.S_IFBLK: "b", stat.S_IFIFO: "p"}.get(stat.S_IFMT(mode))


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


class UpperReader:
    """Turns an upper dir into tar members, in sorted order."""

    def __init__(self, upper: str, lower: Callable[[], PathIndex] | None = None) -> None:
        self.root = os.fsencode(os.path.abspath(upper))
        self.lower = lower
        self._merged: PathIndex | None = None
        self.skipped: list[str] = []
        self.whiteouts = 0
        self.opaque_dirs = 0
        self._links: dict[tuple[int, int], bytes] = {}

    def _full(self, relpath: bytes) -> bytes:
        return _join(self.root, relpath) if relpath else self.root

    def members(self) -> Iterator[Member]:
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode):
            raise CommitError(f"{os.fsdecode(self.root)}: not a directory")
        yield from self._directory(b"", st)

    def _directory(self, relpath: bytes, st: os.stat_result) -> Iterator[Member]:
        full = self._full(relpath)
        xattrs = read_xattrs(full)
        opaque, xwhiteouts = opaque_state(xattrs)
        redirect = redirect_of(xattrs) if relpath else None
        yield Member(relpath, "d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     mtime_ns=st.st_mtime_ns, xattrs=_shown_xattrs(full))
        if redirect is not None:
            yield from self._redirected(relpath)
            return
        if opaque and relpath:
            self.opaque_dirs += 1
            yield Member(_join(relpath, OPAQUE_MARKER), "w", 0o644, mtime_ns=st.st_mtime_ns)
        children = []
        for name in os.listdir(full):
            child_full = _join(full, name)
            cst = os.lstat(child_full)
            if name == OPAQUE_MARKER and opaque:
                continue  # already written after the directory
            whiteout = is_whiteout_device(cst.st_mode, cst.st_rdev) or (
                xwhiteouts and stat.S_ISREG(cst.st_mode) and cst.st_size == 0
                and any(n in read_xattrs(child_full) for n in WHITEOUT_XATTRS))
            children.append((WHITEOUT_PREFIX + name if whiteout else name, name, cst, whiteout))
        # Sorted by the names written, so the tar is in path order.
        for shown, name, cst, whiteout in sorted(children, key=lambda item: item[0]):
            child = _join(relpath, name)
            if whiteout:
                self.whiteouts += 1
                yield Member(_join(relpath, shown), "w", stat.S_IMODE(cst.st_mode) & 0o777,
                             cst.st_uid, cst.st_gid, mtime_ns=cst.st_mtime_ns)
            elif stat.S_ISDIR(cst.st_mode):
                yield from self._directory(child, cst)
            else:
                if name.startswith(WHITEOUT_PREFIX):
                    self.whiteouts += 1  # already in tar form (fuse-overlayfs without mknod)
                yield from self._entry(child, _join(full, name), cst)

    def _entry(self, relpath: bytes, full: bytes, st: os.stat_result) -> Iterator[Member]:
        kind = _kind_of(st.st_mode)
        if kind is None:
            self.skipped.append(os.fsdecode(relpath))
            print(f"layerfs commit: skipping socket /{os.fsdecode(relpath)} (tar cannot hold "
                  "sockets)", file=sys.stderr)
            return
        xattrs = read_xattrs(full)
        if any(name in xattrs for name in METACOPY_XATTRS):
            raise CommitError(f"/{os.fsdecode(relpath)}: a metacopy entry (its data is in a "
                              "lower layer); mount without metacopy=on to commit")
        member = Member(relpath, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        mtime_ns=st.st_mtime_ns, rdev=st.st_rdev, xattrs=_shown_xattrs(full))
        if kind == "f":
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                member.kind, member.target = "h", self._links[key]
            else:
                if st.st_nlink > 1:
                    self._links[key] = relpath
                member.size = st.st_size
                member.open = _opener(full)
        elif kind == "l":
            member.target = os.readlink(full)
        yield member

    # -- renamed directories: the merged view, written whole ---------------------------

    def _redirected(self, relpath: bytes) -> Iterator[Member]:
        if self.lower is None:
            raise CommitError(f"/{os.fsdecode(relpath)} is a renamed directory (overlay "
                              "redirect): give the lower layers (--lower IMAGE, or --into "
                              "with the base image) to write its contents")
        if self._merged is None:
            self._merged = self.lower()
        index = self._merged
        node = index.resolve(relpath)
        if node is None or not node.is_dir:
            raise CommitError(f"/{os.fsdecode(relpath)}: the redirect does not resolve over "
                              "the given lower layers")
        self.opaque_dirs += 1
        yield Member(_join(relpath, OPAQUE_MARKER), "w", 0o644, mtime_ns=node.mtime_ns)
        yield from self._redirected_children(index, relpath, node, {})

    def _redirected_children(self, index: PathIndex, path: bytes, node: Node,
                             links: dict[int, bytes]) -> Iterator[Member]:
        assert node.children is not None
        for name in node.listing():
            child = node.children[name]
            child_path = _join(path, name)
            layer, backing = index.backing(child)
            kind = _kind_of(child.mode)
            if kind is None:
                self.skipped.append(os.fsdecode(child_path))
                continue
            member = Member(child_path, kind, stat.S_IMODE(child.mode), child.uid, child.gid,
                            mtime_ns=child.mtime_ns, rdev=child.rdev,
                            xattrs={n: index.get_xattr(child, n)
                                    for n in index.list_xattrs(child)})
            if kind == "f":
                if child.nlink > 1 and child.ino in links:
                    member.kind, member.target = "h", links[child.ino]
                else:
                    links[child.ino] = child_path
                    member.size = child.size
                    member.open = _opener(layer.path_of(backing))
            elif kind == "l":
                member.target = index.read_link(child)
            yield member
            if child.is_dir:
                yield from self._redirected_children(index, child_path, child, links)


# -- writing the tar ---------------------------------------------------------------------

class _Hashing:
    """A write-only stream that hashes and counts what passes through to ``inner``."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


_TYPES = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
          "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE, "p": tarfile.FIFOTYPE,
          "w": tarfile.REGTYPE, "h": tarfile.LNKTYPE}


def _tarinfo(member: Member, mtime: int | None, exact_mtime: bool = False) -> tarfile.TarInfo:
    name = os.fsdecode(member.path) if member.path else "."
    if member.kind == "d":
        name += "/"
    info = tarfile.TarInfo(name)
    info.type = _TYPES[member.kind]
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname = info.gname = ""
    info.mtime = mtime if mtime is not None else member.mtime_ns // 1_000_000_000
    info.size = member.size if member.kind == "f" else 0
    if member.kind in ("l", "h"):
        info.linkname = os.fsdecode(member.target)
    if member.kind in ("c", "b"):
        info.devmajor, info.devminor = os.major(member.rdev), os.minor(member.rdev)
    for key in sorted(member.xattrs):
        info.pax_headers["SCHILY.xattr." + os.fsdecode(key)] = \
            member.xattrs[key].decode("utf-8", "surrogateescape")
    if exact_mtime and mtime is None and member.mtime_ns % 1_000_000_000:
        seconds, nanoseconds = divmod(member.mtime_ns, 1_000_000_000)
        info.pax_headers["mtime"] = f"{seconds}.{nanoseconds:09d}"
    return info


def write_layer(members: Iterator[Member], out: BinaryIO, compression: str,
                mtime: int | None = None, *, exact_mtime: bool = False,
                progress: Row | None = None) -> tuple[str, int, int]:
    """Write the members as a tar stream, compressed, to ``out`` (``progress``: a row of
    the progress display, told the entries and bytes written).

    Returns (DiffID, uncompressed size, number of members).
    """
    if compression == "gzip":
        compressor: BinaryIO = gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                                             compresslevel=6)
    elif compression == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)
    else:
        compressor = out
    plain = _Hashing(compressor)
    count = 0
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      encoding="utf-8", errors="surrogateescape") as tar:
        for member in members:
            info = _tarinfo(member, mtime, exact_mtime)
            count += 1
            if member.kind == "f" and member.open is not None:
                with member.open() as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
            if progress is not None:
                progress.update(completed=plain.size, state=plural(count, "entry"))
    if compressor is not out:
        compressor.close()
    out.flush()
    return plain.digest, plain.size, count


def commit(upper: str, out_path: str, *, compression: str | None = None,
           mtime: int | None = None, lower: Callable[[], PathIndex] | None = None,
           quiet: bool = True) -> CommittedLayer:
    """Write upper dir ``upper`` as a layer tar at ``out_path`` (``quiet=False``: with a
    progress row on a terminal)."""
    kind = compression_for(out_path, compression)
    reader = UpperReader(upper, lower)
    temporary = out_path + ".partial"
    board = Board(quiet=quiet)
    try:
        with open(temporary, "wb") as raw:
            hashed = _Hashing(raw)
            row = board.row(f"committing {upper}", None, "")
            diff_id, plain_size, count = write_layer(reader.members(), hashed, kind,  # type: ignore[arg-type]
                                                     mtime, progress=row)
            os.fsync(raw.fileno())
        os.replace(temporary, out_path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    finally:
        board.close()
    return CommittedLayer(path=out_path, compression=kind, media_type=media_type_for(kind),
                     digest=hashed.digest, diff_id=diff_id, size=hashed.size,
                     uncompressed_size=plain_size, entries=count, whiteouts=reader.whiteouts,
                     opaque_dirs=reader.opaque_dirs, skipped=reader.skipped)
