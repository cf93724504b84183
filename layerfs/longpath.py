"""Paths longer than the kernel takes in one system call.

A mount's tree can be deeper than PATH_MAX (4096 bytes, the limit on a path
passed to one system call): a user may ``cd`` deep and go on, and a path of
PATH_MAX - 1 bytes *below the mount root* is legal, but the same entry's path
in the backing dir is longer by the root's own path. :func:`reach` gives a
path the kernel accepts for any entry: the path itself when short enough,
else ``/proc/self/fd/N/REST`` where N is an ``O_PATH`` descriptor of a deep
enough ancestor, opened component by component without following symlinks.
The descriptor lives as long as the ``with`` block, so the path must not be
kept beyond it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator

PATH_MAX = 4096
# A path this long or longer (with its NUL) goes through a descriptor.
_LIMIT = PATH_MAX - 1
# What is left to walk after the descriptor's prefix: well under the limit.
_REST_MAX = PATH_MAX // 2


def join(root: bytes, relpath: bytes) -> bytes:
    return root + b"/" + relpath if relpath else root


@contextlib.contextmanager
def reach(root: bytes, relpath: bytes, *, room: int = 0) -> Iterator[bytes]:
    """A path to ``root/relpath`` that system calls accept, for the ``with`` block;
    ``room``: with that many bytes more (a directory's path, for its entries')."""
    full = join(root, relpath)
    if len(full) + room < _LIMIT:
        yield full
        return
    parts = relpath.split(b"/")
    # Keep the last components (at least one) whose length fits as REST.
    keep = 1
    while keep < len(parts) and len(b"/".join(parts[-(keep + 1):])) < _REST_MAX:
        keep += 1
    rest = b"/".join(parts[-keep:])
    if len(rest) >= _REST_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG),
                      os.fsdecode(parts[-1]))
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-keep]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield b"/proc/self/fd/%d/%s" % (fd, rest)
    finally:
        os.close(fd)
