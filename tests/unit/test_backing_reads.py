"""Reading backing files from the page cache without blocking (layerfs.backing.read_if_cached)."""

from __future__ import annotations

import os

import pytest

from layerfs import backing

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no RWF_NOWAIT here")


@pytest.fixture
def cached_file(scratch):
    path = scratch / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    os.pread(fd, 10, 0)  # now in the page cache
    yield fd
    os.close(fd)


def test_a_full_read_from_the_cache_is_served(cached_file):
    assert bytes(backing.read_if_cached(cached_file, 4, 2)) == b"2345"


def test_a_short_read_is_served_only_when_it_reaches_the_known_end(cached_file):
    # The kernel asks for a page; the file is shorter. Without a known size a
    # short read could be a partly cached file: the caller must read for real.
    assert backing.read_if_cached(cached_file, 4096, 0) is None
    assert bytes(backing.read_if_cached(cached_file, 4096, 0, end=10)) == b"0123456789"
    assert bytes(backing.read_if_cached(cached_file, 4096, 10, end=10)) == b""
    # A size that says the file goes on: not the end, not served.
    assert backing.read_if_cached(cached_file, 4096, 0, end=20) is None
