"""The upper and work directories on disk, written in the kernel overlay's format.

Every change to the upper dir goes through :class:`UpperDir`. New objects
and copies are built under a temporary name in ``WORKDIR/work`` -- the
kernel's own work directory, on the upper's filesystem -- with their final
owner, mode, xattrs and times, then renamed into place; removals rename the
old object out into the work dir first. So every step is one rename: a crash
at any instant leaves the old or the new state, and what it leaves in the
work dir is garbage that the next mount (layerfs's or the kernel's) clears.
What changes an object already in the upper dir -- its data, attributes
(:mod:`layerfs.diskattrs`) and xattrs -- is done to it in place, as the
kernel does after a copy-up.

The encodings are the kernel's: a whiteout is a 0/0 character device; an
opaque directory carries ``trusted.overlay.opaque=y``; a renamed lower
directory ``trusted.overlay.redirect`` (``user.overlay.*`` with userxattr).

This module decides nothing about the merged view: :mod:`layerfs.upper`
says what to write, in terms of upper-relative paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import itertools
import os
import stat
from typing import Callable, Iterator

from . import diskattrs
from .copy import copy_data, copy_xattrs, set_xattrs
from .diskattrs import Attributes
from .errors import MountError
from .libc import libc
from .longpath import reach
from .rmtree import remove_tree

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
_AT_FDCWD = -100

__all__ = ["RENAME_EXCHANGE", "RENAME_NOREPLACE", "Attributes", "UpperDir"]


def renameat2(old: bytes, new: bytes, flags: int = 0) -> None:
    if libc.renameat2(_AT_FDCWD, old, _AT_FDCWD, new, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(new))


class UpperDir:
    """The upper dir (``root``) and the kernel's work dir ``WORKDIR/work`` beside it."""

    def __init__(self, upper: str | bytes, workdir: str | bytes, *, userxattr: bool = False,
                 fsync: bool = True) -> None:
        self.root = os.path.abspath(os.fsencode(upper))
        self.workdir = os.path.abspath(os.fsencode(workdir))
        self.work = self.workdir + b"/work"
        self.userxattr = userxattr
        self.prefix = b"user.overlay." if userxattr else b"trusted.overlay."
        self.opaque_xattr = self.prefix + b"opaque"
        self.redirect_xattr = self.prefix + b"redirect"
        self.fsync_enabled = fsync
        self._temp_ids = itertools.count(1)
        self._pid = os.getpid()
        self._lock_fd: int | None = None

    # -- mount time --------------------------------------------------------------

    def prepare(self) -> None:
        """Check the two dirs as the kernel does; create or clear ``WORKDIR/work``."""
        shown_upper, shown_work = os.fsdecode(self.root), os.fsdecode(self.workdir)
        for shown, path in ((shown_upper, self.root), (shown_work, self.workdir)):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise MountError(f"{shown}: no such directory") from None
            except OSError as exc:
                raise MountError(f"{shown}: {exc.strerror}") from None
            if not stat.S_ISDIR(st.st_mode):
                raise MountError(f"{shown}: not a directory")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise MountError(f"{shown_upper}: upper dir is not writable")
        real_upper, real_work = os.path.realpath(self.root), os.path.realpath(self.workdir)
        if real_upper == real_work:
            raise MountError(f"{shown_work}: workdir and upperdir must be separate directories")
        for inner, outer in ((real_upper, real_work), (real_work, real_upper)):
            if inner.startswith(outer + b"/"):
                raise MountError(f"{shown_work}: workdir and upperdir must not be nested")
        self._lock()
        if os.stat(self.root).st_dev != os.stat(self.workdir).st_dev:
            raise MountError(f"{shown_work}: workdir must be on the same filesystem as "
                             f"upperdir {shown_upper}")
        if os.path.lexists(self.work + b"/incompat/volatile"):
            raise MountError(f"{shown_work}: a volatile mount used this workdir and did not "
                             "finish cleanly; the upper dir may be inconsistent")
        # The kernel keeps WORK/work at mode 0, which only privilege can write
        # into; a normal user's daemon needs its own access to it.
        mode = 0 if os.geteuid() == 0 else 0o700
        try:
            st = os.lstat(self.work)
        except FileNotFoundError:
            os.mkdir(self.work, mode)
            os.chmod(self.work, mode)
        else:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(self.work)
                os.mkdir(self.work, mode)
                os.chmod(self.work, mode)
            elif stat.S_IMODE(st.st_mode) != mode and mode:
                os.chmod(self.work, mode)  # left at mode 0 by a kernel mount
            self.clear_work()
        self._probe_xattrs()

    def _lock(self) -> None:
        """Hold the work dir for this mount's lifetime: a second layerfs mount of
        the same upper and work dir would corrupt both (the kernel refuses with
        EBUSY). The lock goes with the daemon, however it ends."""
        fd = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MountError(f"{os.fsdecode(self.workdir)}: in use by another layerfs mount "
                             "(an upper and work dir serve one mount at a time)") from None
        self._lock_fd = fd

    def clear_work(self) -> None:
        """Remove everything a crash or an earlier mount left in the work dir."""
        with os.scandir(self.work) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            remove_tree(self.work + b"/" + os.fsencode(name))

    def _probe_xattrs(self) -> None:
        probe = self._temp_name()
        os.mkdir(probe, 0o700)
        try:
            os.setxattr(probe, self.opaque_xattr, b"y")
        except OSError as exc:
            raise MountError(
                f"{os.fsdecode(self.root)}: the upper filesystem does not take "
                f"{os.fsdecode(self.prefix)}* xattrs ({exc.strerror})"
                + ("" if self.userxattr else "; try -o userxattr")) from None
        finally:
            os.rmdir(probe)

    # -- queries -----------------------------------------------------------------

    def at(self, relpath: bytes) -> contextlib.AbstractContextManager[bytes]:
        """A path to upper entry ``relpath`` for the ``with`` block, however deep
        it is (see :mod:`layerfs.longpath`)."""
        return reach(self.root, relpath)

    def lstat(self, relpath: bytes) -> os.stat_result:
        with self.at(relpath) as path:
            return os.lstat(path)

    def is_whiteout(self, relpath: bytes) -> bool:
        try:
            st = self.lstat(relpath)
        except FileNotFoundError:
            return False
        return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0

    def redirect(self, relpath: bytes) -> bytes | None:
        try:
            with self.at(relpath) as path:
                return os.getxattr(path, self.redirect_xattr, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return None
            raise

    def is_opaque(self, relpath: bytes) -> bool:
        try:
            with self.at(relpath) as path:
                value = os.getxattr(path, self.opaque_xattr, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return False
            raise
        return value.rstrip(b"\0") == b"y"

    def has_entries(self, relpath: bytes) -> bool:
        with self.at(relpath) as path, os.scandir(path) as entries:
            return any(True for _ in entries)

    # -- building in the work dir --------------------------------------------------

    def _temp_name(self) -> bytes:
        return b"%s/#layerfs-%x-%x" % (self.work, self._pid, next(self._temp_ids))

    def build_new(self, attrs: Attributes, *, target: bytes = b"", opaque: bool = False,
                  open_flags: int | None = None) -> tuple[bytes, int | None]:
        """Create a new object in the work dir with its final metadata.

        Returns its temporary path and, for a regular file with ``open_flags``,
        an open descriptor of it (which stays valid once it is installed).
        """
        temp = self._temp_name()
        kind = stat.S_IFMT(attrs.mode)
        fd = None
        try:
            if kind == stat.S_IFREG:
                flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                flags |= open_flags if open_flags is not None else os.O_WRONLY
                fd = os.open(temp, flags, 0o600)
                if open_flags is None:
                    os.close(fd)
                    fd = None
            elif kind == stat.S_IFDIR:
                os.mkdir(temp, 0o700)
            elif kind == stat.S_IFLNK:
                os.symlink(target, temp)
            else:
                os.mknod(temp, kind | 0o600, attrs.rdev)
            diskattrs.give_owner(temp, attrs)
            diskattrs.give_mode_and_times(temp, attrs)
            if opaque:
                os.setxattr(temp, self.opaque_xattr, b"y")
        except BaseException:
            if fd is not None:
                os.close(fd)
            remove_tree(temp)
            raise
        return temp, fd

    def build_copy(self, source: bytes, attrs: Attributes, *,
                   xattrs: dict[bytes, bytes] | None = None,
                   keep_xattr: Callable[[bytes], bool] | None = None,
                   open_source: Callable[[], int] | None = None, size: int = 0,
                   with_data: bool = True) -> bytes:
        """Copy the object at path ``source`` into the work dir: data (for a
        regular file, through ``open_source``), then owner, the given ``xattrs``
        (or those of ``source`` that ``keep_xattr`` accepts), mode and times."""
        temp = self._temp_name()
        kind = stat.S_IFMT(attrs.mode)
        try:
            if kind == stat.S_IFREG:
                dst = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600)
                try:
                    if with_data and size and open_source is not None:
                        src = open_source()
                        try:
                            copy_data(src, dst, size)
                        finally:
                            os.close(src)
                        if self.fsync_enabled:
                            # On disk before it is renamed into place, so that not
                            # even a power cut leaves a short copy hiding the lower
                            # file (the kernel syncs its copy-ups too).
                            os.fsync(dst)
                finally:
                    os.close(dst)
            elif kind == stat.S_IFDIR:
                os.mkdir(temp, 0o700)
            elif kind == stat.S_IFLNK:
                os.symlink(os.readlink(source), temp)
            else:
                os.mknod(temp, kind | 0o600, attrs.rdev)
            diskattrs.give_owner(temp, attrs)
            if xattrs is not None:
                set_xattrs(temp, xattrs)
            elif keep_xattr is not None:
                copy_xattrs(source, temp, keep_xattr)
            diskattrs.give_mode_and_times(temp, attrs)
        except BaseException:
            remove_tree(temp)
            raise
        return temp

    def make_whiteout(self) -> bytes:
        temp = self._temp_name()
        os.mknod(temp, stat.S_IFCHR | 0o000, 0)
        return temp

    def build_link(self, existing: bytes) -> bytes:
        temp = self._temp_name()
        with self.at(existing) as path:
            os.link(path, temp, follow_symlinks=False)
        return temp

    def discard(self, temp: bytes) -> None:
        remove_tree(temp)

    # -- installing: one rename each -------------------------------------------------

    def install(self, temp: bytes, relpath: bytes, *, over_whiteout: bool = False) -> None:
        """Move a built object to ``relpath``: where nothing is, or over a whiteout."""
        with self.at(relpath) as dest:
            self._install(temp, dest, over_whiteout)

    @staticmethod
    def _install(temp: bytes, dest: bytes, over_whiteout: bool) -> None:
        if not over_whiteout:
            renameat2(temp, dest, RENAME_NOREPLACE)
        elif stat.S_ISDIR(os.lstat(temp).st_mode):
            # A directory cannot replace a device: swap them, then drop the whiteout.
            renameat2(temp, dest, RENAME_EXCHANGE)
            os.unlink(temp)
        else:
            os.rename(temp, dest)

    def replace(self, temp: bytes, relpath: bytes) -> None:
        """Move a built file over the upper file at ``relpath`` (one rename)."""
        with self.at(relpath) as dest:
            os.rename(temp, dest)

    def whiteout(self, relpath: bytes) -> None:
        """Make ``relpath`` a whiteout, replacing what is there (a dir whole)."""
        with self.at(relpath) as dest:
            self._whiteout(dest)

    def _whiteout(self, dest: bytes) -> None:
        temp = self.make_whiteout()
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            st = None
        try:
            if st is not None and stat.S_ISDIR(st.st_mode):
                renameat2(temp, dest, RENAME_EXCHANGE)
            else:
                os.rename(temp, dest)
                return
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        remove_tree(temp)

    def remove(self, relpath: bytes) -> None:
        """Remove ``relpath`` without leaving a whiteout (a dir with whatever it holds)."""
        with self.at(relpath) as dest:
            self._remove(dest)

    def _remove(self, dest: bytes) -> None:
        if not stat.S_ISDIR(os.lstat(dest).st_mode):
            os.unlink(dest)
            return
        temp = self._temp_name()
        try:
            os.rename(dest, temp)
        except PermissionError:
            # Moving a dir to another parent needs write access to it; as a user
            # without that, empty it in place (it holds only whiteouts).
            remove_tree(dest)
            return
        remove_tree(temp)

    def clear_dir(self, relpath: bytes) -> None:
        """Replace upper dir ``relpath`` (holding only whiteouts) by an empty opaque
        copy of itself, so that something can be renamed over it."""
        with self.at(relpath) as dest:
            self._clear_dir(dest)

    def _clear_dir(self, dest: bytes) -> None:
        st = os.lstat(dest)
        attrs = Attributes(st.st_mode, st.st_uid, st.st_gid, atime_ns=st.st_atime_ns,
                           mtime_ns=st.st_mtime_ns)
        temp = self.build_copy(dest, attrs,
                               keep_xattr=lambda name: not name.startswith(self.prefix))
        try:
            os.setxattr(temp, self.opaque_xattr, b"y")
            renameat2(temp, dest, RENAME_EXCHANGE)
        except BaseException:
            remove_tree(temp)
            raise
        remove_tree(temp)

    def rename(self, old: bytes, new: bytes, *, whiteout_old: bool = False,
               exchange: bool = False) -> None:
        flags = RENAME_EXCHANGE if exchange else 0
        if whiteout_old:
            flags |= RENAME_WHITEOUT
        with self.at(old) as old_path, self.at(new) as new_path:
            if flags:
                renameat2(old_path, new_path, flags)
            else:
                os.rename(old_path, new_path)

    def link(self, existing: bytes, relpath: bytes) -> None:
        with self.at(existing) as old_path, self.at(relpath) as new_path:
            os.link(old_path, new_path, follow_symlinks=False)

    def link_in(self, outside: bytes, relpath: bytes) -> None:
        """Link ``outside`` (an absolute path: an index entry) to ``relpath``."""
        with self.at(relpath) as new_path:
            os.link(outside, new_path, follow_symlinks=False)

    # -- overlay xattrs --------------------------------------------------------------

    def set_opaque(self, relpath: bytes) -> None:
        with self.at(relpath) as path:
            os.setxattr(path, self.opaque_xattr, b"y", follow_symlinks=False)

    def set_redirect(self, relpath: bytes, value: bytes) -> None:
        with self.at(relpath) as path:
            os.setxattr(path, self.redirect_xattr, value, follow_symlinks=False)

    def keep_inode(self, relpath: bytes, number: int | None) -> None:
        """Record the inode number ``relpath`` keeps across remounts (None: the
        one its path gives, so nothing to record). Best effort."""
        name = self.prefix + b"layerfs.ino"
        try:
            with self.at(relpath) as path:
                if number is not None:
                    os.setxattr(path, name, b"%d" % number, follow_symlinks=False)
                else:
                    os.removexattr(path, name, follow_symlinks=False)
        except OSError as exc:
            # user.* xattrs cannot go on symlinks or devices: such an entry
            # gets its path's number again at the next mount.
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise

    # -- changes in place: data, attributes, xattrs -----------------------------------

    def open(self, relpath: bytes, flags: int) -> int:
        """Open upper file ``relpath`` (never through a symlink) with ``flags``."""
        with self.at(relpath) as path:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)

    def set_attributes(self, where: bytes | int, **changes: int | None) -> os.stat_result:
        """Set the given size, uid, gid, mode, atime_ns, mtime_ns of upper entry
        ``where`` (an upper-relative path), or of the open upper file ``where``
        (a descriptor: a file whose last name is gone). Returns its stat after."""
        if isinstance(where, int):
            return diskattrs.change(where, **changes)
        with self.at(where) as path:
            return diskattrs.change(path, **changes)

    def set_xattr(self, relpath: bytes, name: bytes, value: bytes) -> None:
        """Set xattr ``name`` (its stored name) of upper entry ``relpath``."""
        with self.at(relpath) as path:
            os.setxattr(path, name, value, follow_symlinks=False)

    def remove_xattr(self, relpath: bytes, name: bytes) -> None:
        with self.at(relpath) as path:
            os.removexattr(path, name, follow_symlinks=False)

    @staticmethod
    def allocate(fd: int, mode: int, offset: int, length: int) -> os.stat_result:
        """fallocate(2) on an open upper file (the upper's filesystem says
        EOPNOTSUPP to a mode it cannot do); returns its stat after."""
        diskattrs.fallocate(fd, mode, offset, length)
        return os.fstat(fd)

    # -- timestamps ----------------------------------------------------------------

    @contextlib.contextmanager
    def times_kept(self, relpath: bytes) -> Iterator[None]:
        """Leave the times of upper dir ``relpath`` as they were: copy-up is not a
        change the merged view shows (the kernel restores them too)."""
        st = self.lstat(relpath)
        try:
            yield
        finally:
            with self.at(relpath) as path:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    # -- durability ------------------------------------------------------------------

    def sync(self) -> None:
        """Flush the upper filesystem (at unmount, as the kernel overlay does)."""
        if not self.fsync_enabled:
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            libc.syncfs(fd)
        finally:
            os.close(fd)

    def fsync_path(self, relpath: bytes, *, datasync: bool = False) -> None:
        if not self.fsync_enabled:
            return
        with self.at(relpath) as path:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            (os.fdatasync if datasync else os.fsync)(fd)
        finally:
            os.close(fd)
