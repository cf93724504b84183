"""The byte layouts: sizes as <linux/fuse.h> has them, packers that round-trip."""

from __future__ import annotations

import stat

from hypothesis import given
from hypothesis import strategies as st

from layerfs.fuse import abi
from layerfs.fuse.api import Attributes, Entry, FsStats, Opened

NS = st.integers(min_value=-(2**62), max_value=2**62)


def test_struct_sizes_match_the_kernel_header():
    sizes = {abi.IN_HEADER: 40, abi.OUT_HEADER: 16, abi.ATTR: 88, abi.ENTRY_OUT: 128,
             abi.ATTR_OUT: 104, abi.INIT_OUT: 64, abi.SETATTR_IN: 88, abi.OPEN_OUT: 16,
             abi.READ_IN: 40, abi.WRITE_IN: 40, abi.STATFS_OUT: 80, abi.DIRENT_HEAD: 24,
             abi.RELEASE_IN: 24, abi.COPY_FILE_RANGE_IN: 56, abi.FALLOCATE_IN: 32,
             abi.LSEEK_IN: 24, abi.BACKING_MAP: 16, abi.NOTIFY_INVAL_INODE_OUT: 24}
    assert {s.format: s.size for s in sizes} == {s.format: size for s, size in sizes.items()}


@given(ino=st.integers(1, 2**64 - 1), size=st.integers(0, 2**63), atime=NS, mtime=NS, ctime=NS,
       timeout=st.floats(0, 1e6), mode=st.sampled_from([stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755]))
def test_entry_round_trip(ino, size, atime, mtime, ctime, timeout, mode):
    attributes = Attributes(ino=ino, mode=mode, nlink=3, uid=1000, gid=100, rdev=0, size=size,
                            blocks=8, atime_ns=atime, mtime_ns=mtime, ctime_ns=ctime)
    entry = Entry(attributes, entry_timeout=timeout, attr_timeout=timeout / 2, generation=7)
    fields = abi.ENTRY_OUT.unpack(abi.pack_entry(entry))
    assert fields[:2] == (ino, 7)
    assert abs(fields[2] + fields[4] / 1e9 - timeout) < 1e-6 * max(1, timeout)
    assert fields[6:9] == (ino, size, 8)
    assert [fields[9 + i] * 10**9 + fields[12 + i] for i in range(3)] == [atime, mtime, ctime]
    assert all(0 <= fields[12 + i] < 10**9 for i in range(3))
    assert fields[15:20] == (mode, 3, 1000, 100, 0) and fields[20] == 4096
    assert abi.pack_attr(entry)[16:] == abi.pack_entry(entry)[40:]  # the same fuse_attr


def test_negative_timeout_is_zero():
    assert abi.split_timeout(-1) == (0, 0)
    assert abi.split_timeout(1.5) == (1, 500_000_000)


@given(name=st.binary(min_size=1, max_size=255).filter(lambda n: b"/" not in n and b"\0" not in n),
       plus=st.booleans())
def test_dirents_are_8_byte_aligned(name, plus):
    attributes = Attributes(ino=5, mode=stat.S_IFLNK | 0o777, nlink=1, uid=0, gid=0, rdev=0,
                            size=1, blocks=0, atime_ns=0, mtime_ns=0, ctime_ns=0)
    buffer = bytearray()
    if plus:
        abi.pack_direntplus(buffer, name, Entry(attributes, 1, 1), 42)
    else:
        abi.pack_dirent(buffer, name, 5, attributes.mode, 42)
    assert len(buffer) == abi.dirent_size(name, plus) and len(buffer) % 8 == 0
    start = abi.ENTRY_OUT.size if plus else 0
    ino, offset, namelen, kind = abi.DIRENT_HEAD.unpack_from(buffer, start)
    assert (ino, offset, namelen, kind) == (5, 42, len(name), 10)  # DT_LNK
    assert buffer[start + 24:start + 24 + namelen] == name


def test_open_flags_and_statfs():
    opened = Opened(fh=9, keep_cache=True, cache_dir=True, noflush=True)
    fh, flags, backing = abi.OPEN_OUT.unpack(abi.pack_open(opened))
    assert (fh, backing) == (9, 0)
    assert flags == abi.FOPEN_KEEP_CACHE | abi.FOPEN_CACHE_DIR | abi.FOPEN_NOFLUSH
    passed = Opened(fh=1, keep_cache=True, noflush=True)  # the kernel refuses KEEP_CACHE with it
    assert abi.OPEN_OUT.unpack(abi.pack_open(passed, 3))[1:] == (
        abi.FOPEN_PASSTHROUGH | abi.FOPEN_NOFLUSH, 3)
    stats = FsStats(bsize=4096, frsize=512, blocks=10, bfree=5, bavail=4, files=100, ffree=50,
                    namemax=255)
    assert abi.STATFS_OUT.unpack(abi.pack_statfs(stats)) == (10, 5, 4, 100, 50, 4096, 255, 512, 0)


def test_passthrough_ioctl_numbers():
    # _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t), as the kernel defines them.
    assert abi.DEV_IOC_BACKING_OPEN == 0x4010E501
    assert abi.DEV_IOC_BACKING_CLOSE == 0x4004E502
