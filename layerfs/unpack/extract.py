"""Writing one layer tar into a directory: entries, whiteout markers, and a sidecar.

:class:`LayerWriter` applies tar members one by one to a fresh directory that
only it writes to, so it knows every path it created and never needs to ask
the disk what a parent is. It never follows a symlink it wrote: an entry
below a symlink or a hard link to a name not in the layer is refused, named
in the error. What the disk cannot hold for this user goes to the
:class:`~layerfs.sidecar.Sidecar` (see there); as root owners, modes,
devices and xattrs are created for real.

Whiteouts stay ``.wh.`` marker files (the scanner honours them), except
those whose marker name would exceed NAME_MAX, which go to the sidecar.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from ..errors import ImageError
from ..rmtree import remove_tree
from ..sidecar import Sidecar
from ..sizes import format_size
from ..whiteouts import AUFS_META_PREFIX, OPAQUE_MARKER, OVERLAY_XATTR_PREFIXES, WHITEOUT_PREFIX
from .limits import UnpackLimits
from .names import NAME_MAX, PATH_MAX, UnsafeEntryError, entry_path, link_target, shown
from .stream import CHUNK, LayerStream
from .tarformat import MemberData, TarMember, TarStreamReader

XATTR_PAX_PREFIX = "SCHILY.xattr."
IMPLIED_DIR_MODE = 0o755
# Kinds of the paths this layer created.
DIR, FILE, SYMLINK, OTHER, MARKER = "d", "f", "l", "o", "m"


class LayerWriter:
    """Applies the members of one layer tar to the directory ``root``."""

    def __init__(self, root: bytes, label: str, *, privileged: bool,
                 limits: UnpackLimits | None = None, final_root_length: int = 0,
                 sparse: bool = False) -> None:
        self.root = root
        self.label = label
        self.privileged = privileged
        self.limits = limits or UnpackLimits()
        # Paths must stay openable (under PATH_MAX) once the layer sits at its final place.
        self.max_path = PATH_MAX - 2 - max(final_root_length, len(root))
        self.sparse = sparse
        """Write regular files as holes of their size, reading no data (the skeleton of a
        lazily fetched layer, whose data comes later)."""
        self.sidecar = Sidecar(owner=None if privileged else (0, 0))
        self.sidecar.implied_dirs.add(b"")
        self.kinds: dict[bytes, str] = {b"": DIR}
        self.dir_times: dict[bytes, int] = {}
        self.entries = 0
        self.file_bytes = 0
        self.has_xattrs = False
        """Whether some entry carried an xattr the mount shows (recorded in the layer's
        info as ``has_xattrs``: a mount of layers without any can stop serving them)."""

    # -- public ----------------------------------------------------------------

    def add(self, member: TarMember, tar: TarStreamReader) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ImageError(f"layer {self.label}: more than {self.limits.max_entries} entries "
                             "(raise the limit with --max-entries or LAYERFS_MAX_ENTRIES)")
        path = entry_path(member.name, self.label)
        _check_numbers(member, self.label, path)
        if len(path) > self.max_path:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}' has a path of "
                             f"{len(path)} bytes, too long to store (PATH_MAX is {PATH_MAX})")
        try:
            self._add(path, member, tar)
        except OSError as exc:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}': "
                             f"{exc.strerror or exc}") from None

    def finish(self) -> Sidecar:
        """Set directory times (last, since adding entries changes them)."""
        for path, mtime_ns in self.dir_times.items():
            os.utime(self._full(path), ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.sidecar

    # -- entries ---------------------------------------------------------------

    def _add(self, path: bytes, member: TarMember, tar: TarStreamReader) -> None:
        if not path:
            if not member.isdir():
                raise ImageError(f"layer {self.label}: the root entry '{member.name}' "
                                 "is not a directory")
            self.sidecar.implied_dirs.discard(b"")
            self._set_attributes(path, member, DIR)
            return
        parent, _, name = path.rpartition(b"/")
        if name.startswith(WHITEOUT_PREFIX):
            self._add_marker(path, parent, name)
            return
        self._ensure_parents(path, parent)
        existing = self.kinds.get(path)
        if existing is not None:
            if existing == DIR and member.isdir():
                # a dir met first as a parent (umoci writes data/.wh..wh..opq before
                # data/) is the layer's own once its entry comes: its metadata counts
                self.sidecar.implied_dirs.discard(path)
                self._set_attributes(path, member, DIR)
                return
            self._remove(path, existing)
        self._create(path, member, tar)

    def _add_marker(self, path: bytes, parent: bytes, name: bytes) -> None:
        if name.startswith(AUFS_META_PREFIX) and name != OPAQUE_MARKER:
            return  # AUFS bookkeeping (.wh..wh.plnk, ...): not part of the image
        if not self._parents_are_dirs(parent):
            return  # below a non-directory of this layer: its target cannot exist (1.4.4)
        self._ensure_parents(path, parent)
        if len(name) > NAME_MAX:
            self.sidecar.whiteouts.setdefault(parent, set()).add(name[len(WHITEOUT_PREFIX):])
            return
        if path in self.kinds:
            return
        fd = os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        self.kinds[path] = MARKER

    def _create(self, path: bytes, member: TarMember, tar: TarStreamReader) -> None:
        full = self._full(path)
        if member.isdir():
            os.mkdir(full, 0o700)
            kind = DIR
        elif member.isreg():
            self._count_bytes(path, member.size)
            self.kinds[path] = FILE
            if self.sparse:
                self._write_hole(full, member.size)
            elif member.size <= SMALL_FILE_MAX and not _xattr_keys(member):
                self._add_small_file(path, member, tar)
                return
            else:
                self._write_file(full, tar.extractfile(member))
            kind = FILE
        elif member.issym():
            os.symlink(link_target(member.linkname, self.label, path), full)
            kind = SYMLINK
        elif member.islnk():
            self._link(path, member)
            return
        elif member.ischr() or member.isblk():
            self._make_device(full, member)
            kind = OTHER
        elif member.isfifo():
            os.mkfifo(full, 0o600)
            kind = OTHER
        else:
            return  # GNU volume headers and the like carry no file
        self.kinds[path] = kind
        self._set_attributes(path, member, kind)

    def _count_bytes(self, path: bytes, size: int) -> None:
        self.file_bytes += size
        if self.file_bytes > self.limits.max_layer_size:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}' ({size} bytes) takes "
                             f"the layer over the limit of {format_size(self.limits.max_layer_size)}"
                             " (raise it with --max-layer-size or LAYERFS_MAX_LAYER_SIZE)")

    def _add_small_file(self, path: bytes, member: TarMember,
                          tar: TarStreamReader) -> None:
        """Small files: written and given their attributes through one descriptor."""
        reader = tar.extractfile(member)
        data = reader.read() if reader is not None else b""
        mode = member.mode & 0o7777
        if self.privileged:
            owner: tuple[int, int] | None = (member.uid, member.gid)
        else:
            owner = None
            mode = self._record_unprivileged(path, member, FILE)
        _write_small_file(self._full(path), data, owner, mode, _mtime_ns(member))

    @staticmethod
    def _write_hole(full: bytes, size: int) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _write_file(self, full: bytes, data: MemberData | None) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb", buffering=0) as out:
            if data is not None:
                shutil.copyfileobj(data, out, CHUNK)

    def _link(self, path: bytes, member: TarMember) -> None:
        target = entry_path(member.linkname, self.label, what=f"hard link '{member.name}' ->")
        kind = self.kinds.get(target)
        if kind is None or kind in (DIR, MARKER):
            raise UnsafeEntryError(
                f"layer {self.label}: hard link '{shown(path)}' -> '{shown(target)}': "
                "the target is not a file of this layer")
        os.link(self._full(target), self._full(path), follow_symlinks=False)
        self.kinds[path] = kind
        if target in self.sidecar.stats:
            self.sidecar.stats[path] = self.sidecar.stats[target]
        if target in self.sidecar.xattrs:
            self.sidecar.xattrs[path] = dict(self.sidecar.xattrs[target])

    def _make_device(self, full: bytes, member: TarMember) -> None:
        kind_bits = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        if self.privileged:
            os.mknod(full, kind_bits | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            self._write_file(full, None)  # stands in for the device; the sidecar says what it is

    def _remove(self, path: bytes, kind: str) -> None:
        """A later entry replaces an earlier one at the same path (layer.md).

        What is forgotten is found on disk below the path, not by scanning everything
        recorded: replacing entries again and again must not cost the whole layer each time.
        """
        full = self._full(path)
        gone = [path]
        if kind == DIR:
            gone += _paths_below(full, path)
            remove_tree(full)
        else:
            os.unlink(full)
        sidecar = self.sidecar
        for below in gone:
            self.kinds.pop(below, None)
            self.dir_times.pop(below, None)
            sidecar.stats.pop(below, None)
            sidecar.xattrs.pop(below, None)
            sidecar.whiteouts.pop(below, None)
            sidecar.implied_dirs.discard(below)

    # -- parents -----------------------------------------------------------------

    def _parents_are_dirs(self, parent: bytes) -> bool:
        probe = parent
        while probe:
            kind = self.kinds.get(probe)
            if kind == DIR:
                return True
            if kind is not None:
                return False
            probe = probe.rpartition(b"/")[0]
        return True

    def _ensure_parents(self, path: bytes, parent: bytes) -> None:
        if self.kinds.get(parent) == DIR:
            return  # a known dir's ancestors were all checked when it was made
        missing = []
        probe = parent
        while probe and probe not in self.kinds:
            missing.append(probe)
            probe = probe.rpartition(b"/")[0]
        kind = self.kinds.get(probe)
        if kind == SYMLINK:
            raise UnsafeEntryError(f"layer {self.label}: entry '{shown(path)}' lies below the "
                                   f"symlink '{shown(probe)}' (it would leave the layer)")
        if kind != DIR:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}' lies below "
                             f"'{shown(probe)}', which is not a directory")
        for implied in reversed(missing):
            os.mkdir(self._full(implied), 0o700)
            self.kinds[implied] = DIR
            self.sidecar.implied_dirs.add(implied)
            self._chmod_implied(implied)

    def _chmod_implied(self, path: bytes) -> None:
        if self.privileged:
            os.chmod(self._full(path), IMPLIED_DIR_MODE)
        else:
            os.chmod(self._full(path), IMPLIED_DIR_MODE | 0o700)

    # -- attributes ----------------------------------------------------------------

    def _set_attributes(self, path: bytes, member: TarMember, kind: str) -> None:
        full = self._full(path)
        mode = member.mode & 0o7777
        if self.privileged:
            os.lchown(full, member.uid, member.gid)
            if kind != SYMLINK:
                os.chmod(full, mode)  # after chown, which clears setuid/setgid
        elif kind != SYMLINK:
            os.chmod(full, self._record_unprivileged(path, member, kind))
        else:
            self._record_unprivileged(path, member, kind)
        self._set_xattrs(path, full, member, kind)
        mtime_ns = _mtime_ns(member)
        if kind == DIR:
            self.dir_times[path] = mtime_ns
        else:
            os.utime(full, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _record_unprivileged(self, path: bytes, member: TarMember, kind: str) -> int:
        """Keep the disk usable by this user and note in the sidecar what it does not show;
        returns the permission bits the disk gets."""
        mode = member.mode & 0o7777
        if kind == SYMLINK:
            disk_mode = 0o777
            disk_type, shown_mode, rdev = stat.S_IFLNK, stat.S_IFLNK | 0o777, 0
        else:
            disk_mode = (mode & 0o777) | (0o700 if kind == DIR else 0o600)
            if member.ischr() or member.isblk():
                disk_type = stat.S_IFREG  # an empty file stands in for the device
                type_bits = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                rdev = os.makedev(member.devmajor, member.devminor)
            else:
                disk_type = type_bits = _DISK_TYPE[kind] if not member.isfifo() else stat.S_IFIFO
                rdev = 0
            shown_mode = type_bits | mode
        if (member.uid, member.gid) != self.sidecar.owner or shown_mode != disk_type | disk_mode \
                or rdev:
            self.sidecar.stats[path] = (member.uid, member.gid, shown_mode, rdev)
        else:
            self.sidecar.stats.pop(path, None)
        return disk_mode

    def _set_xattrs(self, path: bytes, full: bytes, member: TarMember, kind: str) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            name = os.fsencode(key[len(XATTR_PAX_PREFIX):])
            if not name or b"\0" in name or len(name) > XATTR_NAME_MAX:
                raise ImageError(f"layer {self.label}: entry '{shown(path)}' has an invalid "
                                 f"xattr name '{shown(name)}'")
            if name.startswith(OVERLAY_XATTR_PREFIXES):
                continue  # overlay's own bookkeeping would change the layer's meaning
            self.has_xattrs = True
            data = value.encode("utf-8", "surrogateescape")
            if self._can_try_xattr(name, kind):
                try:
                    os.setxattr(full, name, data, follow_symlinks=False)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                        raise
            self.sidecar.xattrs.setdefault(path, {})[name] = data

    def _can_try_xattr(self, name: bytes, kind: str) -> bool:
        if self.privileged:
            return True
        # A user may set user.* xattrs on files and dirs only (not symlinks, not devices).
        return name.startswith(b"user.") and kind in (FILE, DIR)

    def _full(self, path: bytes) -> bytes:
        return self.root + b"/" + path if path else self.root


SMALL_FILE_MAX = 1 << 20
XATTR_NAME_MAX = 255
_DISK_TYPE = {DIR: stat.S_IFDIR, FILE: stat.S_IFREG, OTHER: stat.S_IFREG}
_MTIME_MAX = 1 << 62


def _mtime_ns(member: TarMember) -> int:
    """The entry's mtime in ns, clamped to what utimensat takes (PAX allows any number)."""
    try:
        return max(-_MTIME_MAX, min(_MTIME_MAX, int(member.mtime * 1_000_000_000)))
    except (OverflowError, ValueError):  # inf, nan
        return 0


_ID_MAX = (1 << 32) - 2  # (uid_t)-1 means "no change" to chown: not an owner
_DEV_MAX = (1 << 32) - 1


def _check_numbers(member: TarMember, label: str, path: bytes) -> None:
    """Owners, device numbers and sizes a filesystem can hold (PAX allows any number)."""
    for what, value, limit in (("uid", member.uid, _ID_MAX), ("gid", member.gid, _ID_MAX),
                               ("size", member.size, 1 << 62),
                               ("device major", member.devmajor, _DEV_MAX),
                               ("device minor", member.devminor, _DEV_MAX)):
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise ImageError(f"layer {label}: entry '{shown(path)}' has an impossible {what} "
                             f"({value})")


def _paths_below(full: bytes, path: bytes) -> list[bytes]:
    """Layer paths of everything below the directory ``full`` (= ``path``), without recursion."""
    found = []
    pending = [(full, path)]
    while pending:
        directory, relative = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                below = relative + b"/" + entry.name
                found.append(below)
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, below))
    return found


def _xattr_keys(member: TarMember) -> bool:
    return any(key.startswith(XATTR_PAX_PREFIX) for key in member.pax_headers)


def _write_small_file(full: bytes, data: bytes, owner: tuple[int, int] | None, mode: int,
                      mtime_ns: int) -> None:
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)  # after fchown, which clears setuid/setgid
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)


def unpack_tar(stream: LayerStream, root: bytes, *, privileged: bool,
               limits: UnpackLimits | None = None, final_root_length: int = 0) -> LayerWriter:
    """Unpack the whole layer ``stream`` into the empty directory ``root``."""
    writer = LayerWriter(root, stream.label, privileged=privileged, limits=limits,
                         final_root_length=final_root_length)
    reader = TarStreamReader(stream, stream.label, writer.limits)
    last: TarMember | None = None
    for member in reader:
        writer.add(member, reader)
        last = member
    end_of_entries = reader.offset
    stream.drain()
    if last is not None and last.offset_data + last.stored_size > stream.diff_size:
        raise ImageError(f"layer {stream.label}: tar data ends inside entry "
                         f"'{shown(os.fsencode(last.name))}'")
    if stream.data_end > end_of_entries:
        raise ImageError(f"layer {stream.label}: invalid tar header at offset {end_of_entries}")
    writer.finish()
    return writer
