"""The byte layouts of the FUSE kernel protocol, and nothing else.

Opcodes, flags and struct layouts come from the kernel's ``<linux/fuse.h>``
(BSD-2-Clause; protocol 7.38 in this system's header) and, for passthrough
(protocol 7.40), from the kernel's fs/fuse/ and
Documentation/filesystems/fuse-passthrough.rst. Every layout is a
precompiled :class:`struct.Struct`, native little-endian as the kernel
writes it; the packers turn :mod:`layerfs.fuse.api` values into reply bytes.
"""

from __future__ import annotations

import functools
import struct

from .api import Attributes, Entry, FsStats, Opened

KERNEL_VERSION = 7
KERNEL_MINOR_VERSION = 40
"""The minor version we speak: 7.40 adds passthrough (backing_id in
fuse_open_out, max_stack_depth in fuse_init_out)."""

ROOT_ID = 1

# enum fuse_opcode
LOOKUP = 1
FORGET = 2
GETATTR = 3
SETATTR = 4
READLINK = 5
SYMLINK = 6
MKNOD = 8
MKDIR = 9
UNLINK = 10
RMDIR = 11
RENAME = 12
LINK = 13
OPEN = 14
READ = 15
WRITE = 16
STATFS = 17
RELEASE = 18
FSYNC = 20
SETXATTR = 21
GETXATTR = 22
LISTXATTR = 23
REMOVEXATTR = 24
FLUSH = 25
INIT = 26
OPENDIR = 27
READDIR = 28
RELEASEDIR = 29
FSYNCDIR = 30
GETLK = 31
SETLK = 32
SETLKW = 33
ACCESS = 34
CREATE = 35
INTERRUPT = 36
BMAP = 37
DESTROY = 38
IOCTL = 39
POLL = 40
NOTIFY_REPLY = 41
BATCH_FORGET = 42
FALLOCATE = 43
READDIRPLUS = 44
RENAME2 = 45
LSEEK = 46
COPY_FILE_RANGE = 47
SETUPMAPPING = 48
REMOVEMAPPING = 49
SYNCFS = 50
TMPFILE = 51
STATX = 52

OPCODE_NAMES = {value: name for name, value in globals().items()
                if name.isupper() and isinstance(value, int) and 0 < value < 100
                and name not in ("KERNEL_VERSION", "KERNEL_MINOR_VERSION", "ROOT_ID")}

# enum fuse_notify_code
NOTIFY_INVAL_INODE = 2
NOTIFY_INVAL_ENTRY = 3

# fuse_setattr_in.valid
FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_LOCKOWNER = 1 << 9
FATTR_CTIME = 1 << 10
FATTR_KILL_SUIDGID = 1 << 11

# fuse_open_out.open_flags
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_NONSEEKABLE = 1 << 2
FOPEN_CACHE_DIR = 1 << 3
FOPEN_STREAM = 1 << 4
FOPEN_NOFLUSH = 1 << 5
FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6
FOPEN_PASSTHROUGH = 1 << 7
FOPEN_PASSTHROUGH_MASK = (FOPEN_PASSTHROUGH | FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES
                          | FOPEN_NOFLUSH)
"""The only flags the kernel accepts with FOPEN_PASSTHROUGH (fs/fuse/iomode.c):
anything else, KEEP_CACHE included, fails the open with EIO."""

# fuse_init_in.flags / flags2 (the second word as bits 32..63)
ASYNC_READ = 1 << 0
POSIX_LOCKS = 1 << 1
ATOMIC_O_TRUNC = 1 << 3
EXPORT_SUPPORT = 1 << 4
BIG_WRITES = 1 << 5
DONT_MASK = 1 << 6
FLOCK_LOCKS = 1 << 10
AUTO_INVAL_DATA = 1 << 12
DO_READDIRPLUS = 1 << 13
READDIRPLUS_AUTO = 1 << 14
ASYNC_DIO = 1 << 15
WRITEBACK_CACHE = 1 << 16
NO_OPEN_SUPPORT = 1 << 17
PARALLEL_DIROPS = 1 << 18
HANDLE_KILLPRIV = 1 << 19
POSIX_ACL = 1 << 20
ABORT_ERROR = 1 << 21
MAX_PAGES = 1 << 22
CACHE_SYMLINKS = 1 << 23
NO_OPENDIR_SUPPORT = 1 << 24
EXPLICIT_INVAL_DATA = 1 << 25
HANDLE_KILLPRIV_V2 = 1 << 28
SETXATTR_EXT = 1 << 29
INIT_EXT = 1 << 30
SECURITY_CTX = 1 << 32
CREATE_SUPP_GROUP = 1 << 34
PASSTHROUGH = 1 << 37

GETATTR_FH = 1 << 0
FSYNC_FDATASYNC = 1 << 0

# ioctls on /dev/fuse: _IOW(229, nr, size) = 1 << 30 | size << 16 | 229 << 8 | nr
_IOC_MAGIC = 229
DEV_IOC_BACKING_OPEN = 1 << 30 | 16 << 16 | _IOC_MAGIC << 8 | 1  # struct fuse_backing_map
DEV_IOC_BACKING_CLOSE = 1 << 30 | 4 << 16 | _IOC_MAGIC << 8 | 2  # uint32_t backing_id

MIN_READ_BUFFER = 8192

# Structs. "q" for times: the header says uint64 but the kernel reads them signed.
IN_HEADER = struct.Struct("<IIQQIIIHH")           # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")                # len error unique
ATTR = struct.Struct("<QQQqqqIIIIIIIIII")         # fuse_attr, 88 bytes
ENTRY_OUT = struct.Struct("<QQQQII" + ATTR.format[1:])
ATTR_OUT = struct.Struct("<QII" + ATTR.format[1:])
DIRENT_HEAD = struct.Struct("<QQII")              # ino off namelen type
DIRENTPLUS_HEAD = struct.Struct(ENTRY_OUT.format + DIRENT_HEAD.format[1:])
"""A fuse_direntplus up to its name: packed in one call, the listing's hot path."""
INIT_IN = struct.Struct("<IIIII")                 # major minor max_readahead flags flags2
INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")     # ... flags2 max_stack_depth request_timeout
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
GETATTR_IN = struct.Struct("<IIQ")
SETATTR_IN = struct.Struct("<IIQQQqqqIIIIIIII")
MKNOD_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
LINK_IN = struct.Struct("<Q")
OPEN_IN = struct.Struct("<II")
CREATE_IN = struct.Struct("<IIII")
OPEN_OUT = struct.Struct("<QIi")                  # fh open_flags backing_id
RELEASE_IN = struct.Struct("<QIIQ")
FLUSH_IN = struct.Struct("<QIIQ")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")
WRITE_OUT = struct.Struct("<II")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")       # fuse_kstatfs
FSYNC_IN = struct.Struct("<QII")
SETXATTR_IN = struct.Struct("<II")                # size flags (before SETXATTR_EXT)
SETXATTR_IN_EXT = struct.Struct("<IIII")          # size flags setxattr_flags padding
GETXATTR_IN = struct.Struct("<II")
GETXATTR_OUT = struct.Struct("<II")
INTERRUPT_IN = struct.Struct("<Q")
FALLOCATE_IN = struct.Struct("<QQQII")
LSEEK_IN = struct.Struct("<QQII")
LSEEK_OUT = struct.Struct("<Q")
COPY_FILE_RANGE_IN = struct.Struct("<QQQQQQQ")
NOTIFY_INVAL_INODE_OUT = struct.Struct("<Qqq")
NOTIFY_INVAL_ENTRY_OUT = struct.Struct("<QII")
BACKING_MAP = struct.Struct("<iIQ")               # fd flags padding

assert ATTR.size == 88 and ENTRY_OUT.size == 128 and ATTR_OUT.size == 104
assert INIT_OUT.size == 64 and SETATTR_IN.size == 88 and STATFS_OUT.size == 80


@functools.lru_cache(maxsize=64)
def split_timeout(seconds: float) -> tuple[int, int]:
    """A cache timeout as the kernel takes it: whole seconds and nanoseconds."""
    if seconds <= 0:
        return 0, 0
    whole = int(seconds)
    return whole, int((seconds - whole) * 1e9)


def file_type(mode: int) -> int:
    """The DT_* type of a dirent from a st_mode."""
    return (mode >> 12) & 0o17


def attr_fields(a: Attributes) -> tuple[int, ...]:
    """fuse_attr's fields in order."""
    atime, atime_ns = divmod(a.atime_ns, 1_000_000_000)
    mtime, mtime_ns = divmod(a.mtime_ns, 1_000_000_000)
    ctime, ctime_ns = divmod(a.ctime_ns, 1_000_000_000)
    return (a.ino, a.size, a.blocks, atime, mtime, ctime, atime_ns, mtime_ns, ctime_ns,
            a.mode, a.nlink, a.uid, a.gid, a.rdev & 0xFFFFFFFF, a.blksize, 0)


def pack_entry(entry: Entry) -> bytes:
    """fuse_entry_out."""
    a = entry.attributes
    entry_s, entry_ns = split_timeout(entry.entry_timeout)
    attr_s, attr_ns = split_timeout(entry.attr_timeout)
    return ENTRY_OUT.pack(a.ino, entry.generation, entry_s, attr_s, entry_ns, attr_ns,
                          *attr_fields(a))


def pack_attr(entry: Entry) -> bytes:
    """fuse_attr_out: the attributes of an Entry with its attribute timeout."""
    attr_s, attr_ns = split_timeout(entry.attr_timeout)
    return ATTR_OUT.pack(attr_s, attr_ns, 0, *attr_fields(entry.attributes))


def open_flags(opened: Opened) -> int:
    flags = 0
    if opened.keep_cache:
        flags |= FOPEN_KEEP_CACHE
    if opened.direct_io:
        flags |= FOPEN_DIRECT_IO
    if opened.cache_dir:
        flags |= FOPEN_CACHE_DIR
    if opened.noflush:
        flags |= FOPEN_NOFLUSH
    if opened.nonseekable:
        flags |= FOPEN_NONSEEKABLE
    return flags


def pack_open(opened: Opened, backing_id: int = 0) -> bytes:
    """fuse_open_out; with a backing id the file is passed through."""
    flags = open_flags(opened)
    if backing_id:
        flags = (flags | FOPEN_PASSTHROUGH) & FOPEN_PASSTHROUGH_MASK
    return OPEN_OUT.pack(opened.fh, flags, backing_id)


def pack_statfs(stats: FsStats) -> bytes:
    return STATFS_OUT.pack(stats.blocks, stats.bfree, stats.bavail, stats.files, stats.ffree,
                           stats.bsize, stats.namemax, stats.frsize, 0)


def align8(n: int) -> int:
    return (n + 7) & ~7


def dirent_size(name: bytes, plus: bool) -> int:
    """The bytes one listing entry takes in a READDIR(PLUS) reply."""
    return align8((ENTRY_OUT.size if plus else 0) + DIRENT_HEAD.size + len(name))


_PADDING = [b"\0" * n for n in range(8)]


def pack_dirent(buffer: bytearray, name: bytes, ino: int, mode: int, offset: int) -> None:
    """Append a fuse_dirent (8-byte aligned) to ``buffer``."""
    buffer += DIRENT_HEAD.pack(ino, offset, len(name), file_type(mode))
    buffer += name
    buffer += _PADDING[-len(name) & 7]


def pack_direntplus(buffer: bytearray, name: bytes, entry: Entry, offset: int) -> None:
    """Append a fuse_direntplus (an entry_out then a dirent, 8-byte aligned) to ``buffer``."""
    a = entry.attributes
    entry_s, entry_ns = split_timeout(entry.entry_timeout)
    attr_s, attr_ns = split_timeout(entry.attr_timeout)
    atime, atime_ns = divmod(a.atime_ns, 1_000_000_000)
    mtime, mtime_ns = divmod(a.mtime_ns, 1_000_000_000)
    ctime, ctime_ns = divmod(a.ctime_ns, 1_000_000_000)
    mode = a.mode
    buffer += DIRENTPLUS_HEAD.pack(
        a.ino, entry.generation, entry_s, attr_s, entry_ns, attr_ns,
        a.ino, a.size, a.blocks, atime, mtime, ctime, atime_ns, mtime_ns, ctime_ns,
        mode, a.nlink, a.uid, a.gid, a.rdev & 0xFFFFFFFF, a.blksize, 0,
        a.ino, offset, len(name), (mode >> 12) & 0o17)
    buffer += name
    buffer += _PADDING[-len(name) & 7]


def cstrings(data: bytes | memoryview, count: int) -> list[bytes]:
    """The first ``count`` NUL-terminated strings of a request's body.

    A missing terminator is a malformed request: ValueError."""
    raw = bytes(data)
    found: list[bytes] = []
    start = 0
    for _ in range(count):
        end = raw.find(b"\0", start)
        if end < 0:
            raise ValueError("unterminated name in request")
        found.append(raw[start:end])
        start = end + 1
    return found
