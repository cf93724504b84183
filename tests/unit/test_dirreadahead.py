"""Reading a walk's next directories ahead (layerfs/dirreadahead.py), on a
real index over real layer directories: a listed directory queues its unread
subdirectories (not those the index read already, not files), the worker
threads then read every copy below them in the layers, depth first, and
closing stops them."""

from __future__ import annotations

import os
import time

import pytest

from layerfs.dirreadahead import DirectoryReadahead
from layerfs.index import PathIndex
from layerfs.layer import Layer
from tests.support.layerspec import File, materialize_stack

# Two layers; a/ and b/ in both, c/ only in the lower one, each two levels deep.
STACK = [
    {**{f"{top}/{middle}/f".encode(): File(b"x") for top in "abc" for middle in "xyz"},
     b"file": File(b"y")},
    {**{f"{top}/{middle}/g".encode(): File(b"x") for top in "ab" for middle in "xy"}},
]
# Copies of directories below the root: lower a,b,c and 3 each; upper a,b and 2 each.
COPIES_BELOW_ROOT = 3 + 9 + 2 + 4


@pytest.fixture
def stack(scratch):
    dirs = materialize_stack(STACK, scratch, "native")
    index = PathIndex([Layer(str(d), label=d.name) for d in dirs])
    roots = [os.open(d, os.O_PATH | os.O_DIRECTORY) for d in dirs]
    readahead = DirectoryReadahead(index, roots)
    yield index, readahead
    readahead.close()
    for fd in roots:
        os.close(fd)


def test_a_listed_directory_queues_its_unread_subdirectories(stack):
    index, readahead = stack
    root = index.tree.resolve(b"")
    index.load(index.tree.resolve(b"b"))  # read already: not queued
    assert readahead.listed(root) == 2  # a and c; "file" is no directory


def test_the_threads_read_every_copy_below_depth_first(stack):
    index, readahead = stack
    assert readahead.listed(index.tree.resolve(b"")) == 3
    deadline = time.monotonic() + 20
    while readahead.copies_read < COPIES_BELOW_ROOT and time.monotonic() < deadline:
        time.sleep(0.02)
    assert readahead.copies_read == COPIES_BELOW_ROOT


def test_nothing_is_queued_once_the_index_is_complete(stack):
    index, readahead = stack
    index.load_all()
    assert readahead.listed(index.tree.resolve(b"")) == 0
    assert readahead.listed(index.tree.resolve(b"a")) == 0
