"""Reading ahead across a directory's files (layerfs/readahead.py), on a real
index over real layer directories: which reads start it (a walk in listing
order, not a program's own picks), what it warms (the lower files that follow,
within its window, never upper or empty ones), that a walk is followed into
the next directory at once, and that the files it names really reach the page
cache (each evicted first with POSIX_FADV_DONTNEED, then looked up with
cachestat(2), which reads nothing)."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from pathlib import Path

import pytest

from layerfs.index import Node, PathIndex
from layerfs.layer import Layer
from layerfs.readahead import FILE_BYTES, WINDOW_FILES, ListingReadahead
from tests.support.layerspec import File, materialize_stack
from tests.support.pagecache import evict

SIZE = 16 << 10
NAMES = [f"f{number:02d}" for number in range(60)]
STACK = [
    {**{f"d/{name}".encode(): File(os.urandom(SIZE)) for name in NAMES},
     **{f"e/{name}".encode(): File(os.urandom(SIZE)) for name in NAMES[:8]},
     b"d/f03": File(b""), b"big/a": File(b"x" * (3 * FILE_BYTES)), b"big/b": File(b"y"),
     **{f"big/c{number:02d}".encode(): File(b"z" * FILE_BYTES) for number in range(12)}},
    {b"d/f05": File(b"upper copy")},
]


@pytest.fixture
def stack(scratch):
    dirs = materialize_stack(STACK, scratch, "native")
    index = PathIndex([Layer(str(d), label=d.name) for d in dirs])
    roots = [os.open(d, os.O_PATH | os.O_DIRECTORY) for d in dirs]
    readahead = ListingReadahead(index, roots)
    yield index, readahead, dirs
    readahead.close()
    for fd in roots:
        os.close(fd)


def node(index: PathIndex, path: str) -> Node:
    found = index.tree.resolve(path.encode())
    assert found is not None, path
    return found


def shown(dirs: list[Path], path: bytes) -> Path:
    """The file of the topmost layer holding ``path``."""
    return next(d / os.fsdecode(path) for d in reversed(dirs) if (d / os.fsdecode(path)).exists())


SYS_CACHESTAT = 451  # the same number on every Linux architecture
_libc = ctypes.CDLL(None, use_errno=True)


def pages_cached(path: Path) -> int:
    """How many of ``path``'s pages are in the page cache (cachestat(2):
    a read, even one that must not wait, could start reading ahead)."""
    whole_file = (ctypes.c_uint64 * 2)(0, 0)
    counts = (ctypes.c_uint64 * 5)()
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syscall(ctypes.c_long(SYS_CACHESTAT), ctypes.c_int(fd), whole_file, counts,
                         ctypes.c_uint(0)) != 0:
            number = ctypes.get_errno()
            if number == errno.ENOSYS:
                pytest.skip("no cachestat(2) to see the page cache (Linux 6.5+)")
            raise OSError(number, os.strerror(number), str(path))
    finally:
        os.close(fd)
    return counts[0]


def in_page_cache(path: Path) -> bool:
    return pages_cached(path) * 4096 >= path.stat().st_size


def test_a_single_cold_read_warms_nothing(stack):
    index, readahead, _ = stack
    assert readahead.first_read(node(index, "d/f10"), missed=True) == []
    # A program's own pick elsewhere in the directory: still not a walk.
    assert readahead.first_read(node(index, "d/f30"), missed=True) == []
    assert readahead.first_read(node(index, "d/f20"), missed=True) == []


def test_a_read_already_cached_starts_nothing(stack):
    index, readahead, _ = stack
    assert readahead.first_read(node(index, "d/f10"), missed=False) == []
    assert readahead.first_read(node(index, "d/f11"), missed=False) == []


def test_a_walk_in_listing_order_warms_each_lower_file_after_it_once(stack):
    index, readahead, _ = stack
    assert readahead.first_read(node(index, "d/f00"), missed=True) == []
    warmed = readahead.first_read(node(index, "d/f01"), missed=True)
    # A window of files after f01, less the empty f03.
    assert warmed == [f"d/{name}".encode() for name in NAMES[2:2 + WINDOW_FILES]
                      if name != "f03"]
    for name in NAMES[2:]:
        warmed += readahead.first_read(node(index, f"d/{name}"), missed=False)
    assert warmed == [f"d/{name}".encode() for name in NAMES[2:] if name != "f03"]


def test_a_walk_is_followed_into_the_next_directory_at_once(stack):
    index, readahead, _ = stack
    readahead.first_read(node(index, "d/f00"), missed=True)
    readahead.first_read(node(index, "d/f01"), missed=True)
    assert readahead.first_read(node(index, "e/f00"), missed=True) == \
        [f"e/{name}".encode() for name in NAMES[1:8]]


def test_the_window_holds_a_bounded_number_of_bytes(stack):
    index, readahead, _ = stack
    readahead.first_read(node(index, "big/a"), missed=True)
    warmed = readahead.first_read(node(index, "big/b"), missed=True)
    # Each file counts at most FILE_BYTES; the window stops at WINDOW_BYTES.
    assert warmed == [f"big/c{number:02d}".encode() for number in range(8)]


def test_the_files_it_names_reach_the_page_cache(stack):
    index, readahead, dirs = stack
    files = [shown(dirs, f"d/{name}".encode()) for name in NAMES]
    for path in files:
        evict(path)
    if any(pages_cached(path) for path in files):
        pytest.skip("this filesystem keeps pages POSIX_FADV_DONTNEED asked to drop")
    readahead.first_read(node(index, "d/f00"), missed=True)
    warmed = readahead.first_read(node(index, "d/f01"), missed=True)
    deadline = time.monotonic() + 20
    waiting = [shown(dirs, path) for path in warmed]
    while waiting and time.monotonic() < deadline:
        waiting = [path for path in waiting if not in_page_cache(path)]
        time.sleep(0.05)
    assert waiting == []
    # Beyond the window nothing was read.
    assert not pages_cached(files[-1])
