"""Removing a directory tree the unpacker made, whatever its modes and depth.

A layer may hold directories of mode 0000 and nest a few thousand levels
deep (up to PATH_MAX): the walk is iterative (no recursion limit) and gives
each directory owner access before emptying it. Symlinks are removed, never
followed.
"""

from __future__ import annotations

import os


def remove_tree(path: str | os.PathLike[str] | bytes) -> None:
    top = os.fsencode(path)
    if not os.path.lexists(top):
        return
    if os.path.islink(top) or not os.path.isdir(top):
        os.unlink(top)
        return
    stack = [top]
    while stack:
        current = stack[-1]
        try:
            os.chmod(current, 0o700)
        except OSError:
            pass  # not ours: removing its children may still work
        subdirs = []
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(current)
            stack.pop()
