"""Walking one layer for xattrs: run by :mod:`layerfs.xattrcheck` as
``python -m layerfs.xattrwalk ROOT`` in a low-priority subprocess.

It prints "none" when no entry of the tree shows an xattr through a mount
(overlay's own and layerfs's private ones never do), anything else when one
may. Kept apart, with nothing heavier than the standard library imported, so
the subprocess starts in a few milliseconds.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Sequence

from .whiteouts import visible_xattr_name

NONE = "none"
"""What the walk prints when it visited every entry and found no xattr."""
NICENESS = 10


def shows_xattrs(path: bytes) -> bool:
    """Whether the entry at ``path`` (not following a final symlink) shows an xattr;
    one that cannot be asked counts as one that does."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        return exc.errno != errno.ENOTSUP  # a filesystem without xattrs holds none
    return any(visible_xattr_name(os.fsencode(name)) is not None for name in names)


def walk_shows_xattrs(root: bytes) -> bool:
    """Whether an entry of the tree at ``root`` (itself included) shows an xattr.
    Every entry is visited (the walk is also a read-ahead); symlinks are never
    followed; an entry that cannot be read counts as one that shows xattrs."""
    found = shows_xattrs(root)
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    found = shows_xattrs(entry.path) or found
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            found = True
    return found


def main(argv: Sequence[str]) -> int:
    """``python -m layerfs.xattrwalk ROOT``: prints "none" when no entry shows an xattr."""
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    print("some" if walk_shows_xattrs(os.fsencode(argv[0])) else NONE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
