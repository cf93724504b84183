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
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from ..errors import ImageError
from ..sidecar import Sidecar
from ..whiteouts import AUFS_META_PREFIX, OPAQUE_MARKER, OVERLAY_XATTR_PREFIXES, WHITEOUT_PREFIX
from .names import NAME_MAX, UnsafeEntryError, entry_path, shown
from .stream import CHUNK, LayerStream

XATTR_PAX_PREFIX = "SCHILY.xattr."
IMPLIED_DIR_MODE = 0o755
# Kinds of the paths this layer created.
DIR, FILE, SYMLINK, OTHER, MARKER = "d", "f", "l", "o", "m"


class LayerWriter:
    """Applies the members of one layer tar to the directory ``root``."""

    def __init__(self, root: bytes, label: str, *, privileged: bool,
                 sparse: bool = False) -> None:
        self.root = root
        self.label = label
        self.privileged = privileged
        self.sparse = sparse
        """Write regular files as holes of their size, reading no data (the skeleton of a
        lazily fetched layer, whose data comes later)."""
        self.sidecar = Sidecar(owner=None if privileged else (0, 0))
        self.sidecar.implied_dirs.add(b"")
        self.kinds: dict[bytes, str] = {b"": DIR}
        self.dir_times: dict[bytes, int] = {}
        self.entries = 0
        self.file_bytes = 0
        self.pool = FilePool(label)

    # -- public ----------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.entries += 1
        path = entry_path(member.name, self.label)
        try:
            self._add(path, member, tar)
        except OSError as exc:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}': "
                             f"{exc.strerror or exc}") from None
        except tarfile.TarError as exc:
            raise ImageError(f"layer {self.label}: tar data ends inside entry "
                             f"'{shown(path)}' ({exc})") from None

    def finish(self) -> Sidecar:
        """Set directory times (last, since adding entries changes them)."""
        self.pool.drain()
        for path, mtime_ns in self.dir_times.items():
            os.utime(self._full(path), ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.sidecar

    # -- entries ---------------------------------------------------------------

    def _add(self, path: bytes, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
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

    def _create(self, path: bytes, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        full = self._full(path)
        if member.isdir():
            os.mkdir(full, 0o700)
            kind = DIR
        elif member.isreg():
            self.file_bytes += member.size
            self.kinds[path] = FILE
            if self.sparse:
                self._write_hole(full, member.size)
            elif member.size <= POOLED_FILE_MAX and not _xattr_keys(member):
                self._write_file_pooled(path, member, tar)
                return
            else:
                self._write_file(full, tar.extractfile(member))
            kind = FILE
        elif member.issym():
            os.symlink(os.fsencode(member.linkname), full)
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

    def _write_file_pooled(self, path: bytes, member: tarfile.TarInfo,
                           tar: tarfile.TarFile) -> None:
        """Small files: read here, written by the pool with their attributes (file creation
        is the slow part of unpacking, and it releases the GIL)."""
        reader = tar.extractfile(member)
        data = reader.read() if reader is not None else b""
        mode = member.mode & 0o7777
        if self.privileged:
            owner: tuple[int, int] | None = (member.uid, member.gid)
        else:
            owner = None
            mode = self._record_unprivileged(path, member, FILE)
        mtime_ns = int(member.mtime * 1_000_000_000)
        self.pool.submit(path, _write_small_file, self._full(path), data, owner, mode, mtime_ns)

    @staticmethod
    def _write_hole(full: bytes, size: int) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _write_file(self, full: bytes, data: BinaryIO | None) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb", buffering=0) as out:
            if data is not None:
                shutil.copyfileobj(data, out, CHUNK)

    def _link(self, path: bytes, member: tarfile.TarInfo) -> None:
        target = entry_path(member.linkname, self.label, what=f"hard link '{member.name}' ->")
        kind = self.kinds.get(target)
        self.pool.wait_for(target)
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

    def _make_device(self, full: bytes, member: tarfile.TarInfo) -> None:
        kind_bits = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        if self.privileged:
            os.mknod(full, kind_bits | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            self._write_file(full, None)  # stands in for the device; the sidecar says what it is

    def _remove(self, path: bytes, kind: str) -> None:
        """A later entry replaces an earlier one at the same path (layer.md)."""
        self.pool.drain()
        full = self._full(path)
        if kind == DIR:
            _make_writable_tree(full)
            shutil.rmtree(full)
            prefix = path + b"/"
            for below in [p for p in self.kinds if p.startswith(prefix)]:
                del self.kinds[below]
                self.dir_times.pop(below, None)
        else:
            os.unlink(full)
        del self.kinds[path]
        self.dir_times.pop(path, None)
        self.sidecar.forget(path)

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

    def _set_attributes(self, path: bytes, member: tarfile.TarInfo, kind: str) -> None:
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
        mtime_ns = int(member.mtime * 1_000_000_000)
        if kind == DIR:
            self.dir_times[path] = mtime_ns
        else:
            os.utime(full, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _record_unprivileged(self, path: bytes, member: tarfile.TarInfo, kind: str) -> int:
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

    def _set_xattrs(self, path: bytes, full: bytes, member: tarfile.TarInfo, kind: str) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            name = os.fsencode(key[len(XATTR_PAX_PREFIX):])
            if name.startswith(OVERLAY_XATTR_PREFIXES):
                continue  # overlay's own bookkeeping would change the layer's meaning
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


POOLED_FILE_MAX = 1 << 20
_MEMBERS_KEPT = 1024
_POOL_THREADS = 1  # more threads contend on directory locks and the GIL
_POOL_MAX_PENDING = 512
_DISK_TYPE = {DIR: stat.S_IFDIR, FILE: stat.S_IFREG, OTHER: stat.S_IFREG}


def _xattr_keys(member: tarfile.TarInfo) -> bool:
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


class FilePool:
    """Writes small files on a writer thread, in bounded batches; errors name the entry."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[bytes, Future] = {}

    def submit(self, path: bytes, function, *args) -> None:  # type: ignore[no-untyped-def]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="unpack")
        if len(self._pending) >= _POOL_MAX_PENDING:
            self.drain()
        self._pending[path] = self._executor.submit(function, *args)

    def wait_for(self, path: bytes) -> None:
        future = self._pending.pop(path, None)
        if future is not None:
            self._result(path, future)

    def drain(self) -> None:
        pending, self._pending = self._pending, {}
        failure: BaseException | None = None
        for path, future in pending.items():
            try:
                self._result(path, future)
            except BaseException as exc:  # wait for every write before failing
                failure = failure or exc
        if failure is not None:
            raise failure

    def close(self) -> None:
        if self._executor is not None:
            try:
                self.drain()
            finally:
                self._executor.shutdown(wait=True)
                self._executor = None

    def abandon(self) -> None:
        """After a failure: let the writes in flight end, ignoring their errors."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pending = {}

    def _result(self, path: bytes, future: Future) -> None:
        try:
            future.result()
        except OSError as exc:
            raise ImageError(f"layer {self.label}: entry '{shown(path)}': "
                             f"{exc.strerror or exc}") from None


def _make_writable_tree(top: bytes) -> None:
    """Give the owner write access everywhere below ``top`` so it can be removed."""
    for dirpath, dirnames, _ in os.walk(top):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    os.chmod(top, 0o700)


def unpack_tar(stream: LayerStream, root: bytes, *, privileged: bool) -> LayerWriter:
    """Unpack the whole layer ``stream`` into the empty directory ``root``."""
    writer = LayerWriter(root, stream.label, privileged=privileged)
    try:
        _unpack_members(stream, writer)
    except BaseException:
        writer.pool.abandon()
        raise
    writer.pool.close()
    return writer


def _unpack_members(stream: LayerStream, writer: LayerWriter) -> None:
    last: tarfile.TarInfo | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape",  # type: ignore[arg-type]
                          encoding="utf-8") as tar:
            for member in tar:
                writer.add(member, tar)
                last = member
                if len(tar.members) > _MEMBERS_KEPT:
                    tar.members.clear()  # tarfile keeps every header; a layer may have millions
            end_of_entries = tar.offset
    except tarfile.TarError as exc:
        raise ImageError(f"layer {stream.label}: not a valid tar archive ({exc})") from None
    stream.drain()
    if last is not None and last.offset_data + last.size > stream.diff_size:
        raise ImageError(f"layer {stream.label}: tar data ends inside entry '{last.name}'")
    if stream.data_end > end_of_entries:
        raise ImageError(f"layer {stream.label}: invalid tar header at offset {end_of_entries}")
    writer.finish()
