"""The kernel overlay's inode index (``index=on``) for hard-linked lower files, on disk.

With ``index=on`` the kernel copies up only the touched name of a lower file
that has more than one link, and keeps the group one inode through an entry
of ``WORKDIR/index``: a hard link to the upper copy named after the lower
file's origin handle. The other names stay lower; they show the index
entry's inode and are linked up from it when they themselves change. This
module knows that format, byte for byte as the kernel writes it
(Documentation/filesystems/overlayfs.rst "Inode index"; fs/overlayfs/
copy_up.c ovl_encode_real_fh, namei.c ovl_get_index_name, util.c
ovl_set_nlink_common):

- the origin (``overlay.origin`` xattr of the copy): ``struct ovl_fb`` --
  version 0, magic 0xfb, length, flags (0 little-endian, 1 big-endian), the
  file handle type, the lower filesystem's 16-byte uuid, then the handle of
  name_to_handle_at(2) (flags 0, as exportfs_encode_fh(..., 0));
- the index entry's name: that ovl_fb in lowercase hex;
- ``overlay.nlink``: ``U%+d``, the merged link count less the upper inode's
  (``L%+d``, relative to the lower inode's, is read too).

Which xattr namespace (``trusted.`` or ``user.``) is the upper dir's
(:class:`~layerfs.upperdir.UpperDir.prefix`). The merge decisions are in
:mod:`layerfs.copyup` and :mod:`layerfs.loader`; this module only reads and
writes the index dir.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import stat
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
MAX_HANDLE_SZ = 128
# _IOR(0x15, 0, struct fsuuid2 { __u8 len; __u8 uuid[16]; }): the s_uuid the
# kernel puts in an origin handle.
FS_IOC_GETFSUUID = (2 << 30) | (17 << 16) | (0x15 << 8)
NULL_UUID = bytes(16)
OVL_FH_MAGIC = 0xFB
OVL_FH_FLAG_BIG_ENDIAN = 1
_FB_HEADER = 5 + 16  # version, magic, len, flags, type; uuid


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def file_handle(path: bytes) -> tuple[int, bytes]:
    """name_to_handle_at(2) of ``path`` (not following a final symlink): (type, bytes)."""
    handle = _FileHandle()
    handle.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(_AT_FDCWD, path, ctypes.byref(handle),
                               ctypes.byref(mount_id), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return handle.handle_type, bytes(handle.f_handle[:handle.handle_bytes])


def fs_uuid(path: bytes) -> bytes:
    """The uuid of the filesystem holding directory ``path`` (null if it has none)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        answer = fcntl.ioctl(fd, FS_IOC_GETFSUUID, bytes(17))
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL, errno.ENOTSUP):
            raise
        return NULL_UUID  # the kernel's s_uuid is null there too
    finally:
        os.close(fd)
    length = answer[0]
    return answer[1:1 + length].ljust(16, b"\0")[:16]


def origin_handle(handle_type: int, handle: bytes, uuid: bytes) -> bytes:
    """The kernel's ``struct ovl_fb`` for a lower file (what ``overlay.origin`` holds)."""
    if not 0 <= handle_type < 0xFF or _FB_HEADER + len(handle) > 0xFF or len(uuid) != 16:
        raise ValueError("file handle does not fit an overlay origin")
    flags = OVL_FH_FLAG_BIG_ENDIAN if sys.byteorder == "big" else 0
    return struct.pack("5B", 0, OVL_FH_MAGIC, _FB_HEADER + len(handle), flags,
                       handle_type) + uuid + handle


def nlink_value(extra: int) -> bytes:
    """``overlay.nlink``: the merged count is the upper inode's plus ``extra``."""
    return b"U%+d" % extra


def parse_nlink(value: bytes, upper_nlink: int, lower_nlink: int | None) -> int | None:
    """The merged link count an ``overlay.nlink`` value gives (None if unusable)."""
    value = value.rstrip(b"\0")
    if len(value) < 2 or value[:1] not in (b"U", b"L"):
        return None
    try:
        extra = int(value[1:])
    except ValueError:
        return None
    if value[:1] == b"U":
        return upper_nlink + extra
    return None if lower_nlink is None else lower_nlink + extra


def _remove_entry(path: bytes) -> None:
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class HardlinkIndex:
    """``WORKDIR/index``: the index entries of hard-linked lower files."""

    def __init__(self, workdir: bytes, prefix: bytes) -> None:
        self.dir = workdir + b"/index"
        self.origin_xattr = prefix + b"origin"
        self.nlink_xattr = prefix + b"nlink"
        self.ino_xattr = prefix + b"layerfs.ino"
        self._uuids: dict[int, bytes] = {}
        self.names: set[bytes] = set()
        """The entries present (the lower files that need no handle are many)."""

    def prepare(self) -> None:
        """Create the index dir as the kernel does (mode 0, or 0700 for a normal
        user's daemon, which has no privilege to write into mode 0); note its
        entries, removing what the kernel's mount removes (ovl_indexdir_cleanup):
        temporary ``#`` entries a copy-up left when cut short, and orphans."""
        mode = 0 if os.geteuid() == 0 else 0o700
        try:
            os.mkdir(self.dir, mode)
            os.chmod(self.dir, mode)
        except FileExistsError:
            pass
        self.names = set()
        for name in os.listdir(self.dir):
            if name.startswith(b"#") or self._is_orphan(name):
                _remove_entry(self.path(name))
            else:
                self.names.add(name)

    def _is_orphan(self, name: bytes) -> bool:
        """An entry no name shows any more: the index link alone, and a merged
        link count of 0, or none it can read (the kernel's fallback is 0). A
        count relative to the lower inode (``L``) needs that inode: kept."""
        st = os.lstat(self.path(name))
        if stat.S_ISDIR(st.st_mode) or st.st_nlink != 1:
            return False
        value = self.xattrs(name).get(self.nlink_xattr)
        if value is not None and value.rstrip(b"\0")[:1] == b"L":
            return False
        shown = None if value is None else parse_nlink(value, st.st_nlink, None)
        return shown is None or shown <= 0

    def path(self, name: bytes) -> bytes:
        return self.dir + b"/" + name

    def origin_of(self, path: bytes) -> bytes | None:
        """The origin handle of lower file ``path``, None where its filesystem gives none."""
        try:
            handle_type, handle = file_handle(path)
            st = os.lstat(path)
            uuid = self._uuids.get(st.st_dev)
            if uuid is None:
                uuid = self._uuids[st.st_dev] = fs_uuid(os.path.dirname(path) or b".")
            return origin_handle(handle_type, handle, uuid)
        except (OSError, ValueError):
            return None

    def find(self, path: bytes) -> tuple[bytes, os.stat_result, dict[bytes, bytes]] | None:
        """The index entry of lower file ``path``: (name, its stat, its overlay
        xattrs), or None if it has none."""
        if not self.names:
            return None
        origin = self.origin_of(path)
        if origin is None or origin.hex().encode() not in self.names:
            return None
        name = origin.hex().encode()
        try:
            st = os.lstat(self.path(name))
        except FileNotFoundError:
            self.names.discard(name)
            return None
        own = self.xattrs(name)
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(os.lstat(path).st_mode) \
                or own.get(self.origin_xattr) != origin:
            return None  # not this file's entry (the kernel's check): leave it be
        return name, st, own

    def xattrs(self, name: bytes) -> dict[bytes, bytes]:
        values = {}
        for xattr in (self.nlink_xattr, self.ino_xattr, self.origin_xattr):
            try:
                values[xattr] = os.getxattr(self.path(name), xattr, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                    raise
        return values

    def install(self, temp: bytes, name: bytes) -> None:
        """Move a built copy into the index as entry ``name`` (a stale one is replaced)."""
        os.rename(temp, self.path(name))
        self.names.add(name)

    def set_nlink(self, name: bytes, extra: int) -> None:
        os.setxattr(self.path(name), self.nlink_xattr, nlink_value(extra), follow_symlinks=False)

    def remove(self, name: bytes) -> None:
        """The group's last name is gone: so is its entry (the kernel's ovl_cleanup_index)."""
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass
        self.names.discard(name)
