"""Removing a directory tree we made, whatever its modes and depth.

One remover for the layer cache, the unpacker's staging dirs and the upper
dir's temporary trees. A tree may hold directories of mode 0000 and nest
deeper than PATH_MAX (an upper dir has no depth limit; see
:mod:`layerfs.longpath`), so the walk is iterative (no recursion limit) and
works relative to one open directory descriptor at a time (no path grows with
the depth, and the number of descriptors open stays constant). Each directory
is given owner access before it is emptied. Symlinks are removed, never
followed, and a directory on another filesystem (something mounted inside the
tree, say a mount left behind) is never entered: that is an error (EBUSY).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str] | bytes) -> None:
    """Remove ``path`` and everything below it; a missing path is fine."""
    top = os.fsencode(path)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return
    with contextlib.suppress(OSError):
        os.chmod(top, 0o700)  # not ours: removing its children may still work
    fd = os.open(top, _DIR_FLAGS)
    device = os.fstat(fd).st_dev
    names: list[bytes] = []
    """The names from ``top`` down to the directory ``fd`` is open on."""
    pending = [_remove_files(fd)]
    """Per directory on that way: its subdirectories not removed yet."""
    try:
        while pending:
            if pending[-1]:
                name = pending[-1].pop()
                with contextlib.suppress(OSError):
                    os.chmod(name, 0o700, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if os.fstat(fd).st_dev != device:
                    raise OSError(errno.EBUSY, "a mount point inside the tree",
                                  os.fsdecode(b"/".join([top, *names, name])))
                names.append(name)
                pending.append(_remove_files(fd))
                continue
            pending.pop()
            if not names:
                break
            parent = os.open(b"..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def _remove_files(fd: int) -> list[bytes]:
    """Unlink every entry of the directory open on ``fd`` but its subdirectories,
    which are returned."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            name = os.fsencode(entry.name)
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(name)
            else:
                os.unlink(name, dir_fd=fd)
    return subdirs
