"""Changes to an existing entry of the merged view: its data, attributes and xattrs.

Opening a file for writing, truncating it, fallocate, chmod/chown/utimes
and setting or removing xattrs all copy the entry up first (a truncation to
zero without its data), then change the upper copy in place through
:class:`~layerfs.upperdir.UpperDir` and record its new attributes in the
tree. A file whose last name is gone is changed through an open descriptor
of it. Xattrs are stored under the upper dir's names for them
(:func:`~layerfs.whiteouts.backing_xattr_name`); the overlay's own cannot
be set through the mount.
"""

from __future__ import annotations

import errno
import os
import stat

from .changes import one_change
from .copyup import CopyUp
from .index import Node
from .whiteouts import backing_xattr_name


def _fail(err: int) -> OSError:
    return OSError(err, os.strerror(err))


class AttributeChanges(CopyUp):
    """The changes of one entry in place (a base of :class:`~layerfs.upper.Upper`)."""

    @one_change
    def setattr(self, node: Node, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, fd: int | None = None) -> None:
        """Change attributes (copying ``node`` up first); ``fd`` is an open upper
        descriptor of it, needed once its last name is gone."""
        attached = self.tree.is_attached(node)
        if not attached and fd is None:
            raise _fail(errno.ENOENT)
        if attached:
            self._copy_up(node, with_data=size != 0)
        if stat.S_ISLNK(node.mode):
            mode = None  # a symlink's mode never changes (chmod would follow it)
        st = self.disk.set_attributes(node.path() if attached else fd,  # type: ignore[arg-type]
                                      mode=mode, uid=uid, gid=gid, size=size,
                                      atime_ns=atime_ns, mtime_ns=mtime_ns)
        self.tree.set_stat(node, st)

    @one_change
    def fallocate(self, node: Node, offset: int, length: int, mode: int, *,
                  fd: int | None = None) -> None:
        """fallocate(2) ``node`` (copied up first); ``fd``: an open upper
        descriptor of it for writing, else the upper file is opened."""
        opened = fd is None
        if fd is None:
            fd = self._open_for_write(node, os.O_WRONLY)
        try:
            self.tree.set_stat(node, self.disk.allocate(fd, mode, offset, length))
        finally:
            if opened:
                os.close(fd)

    @one_change
    def setxattr(self, node: Node, name: bytes, value: bytes) -> None:
        backing = backing_xattr_name(name)
        if backing is None:
            raise _fail(errno.EPERM)
        if not self.tree.is_attached(node):
            raise _fail(errno.ENOENT)
        self._copy_up(node)
        self.disk.set_xattr(node.path(), backing, value)
        self.refresh(node)

    @one_change
    def removexattr(self, node: Node, name: bytes) -> None:
        backing = backing_xattr_name(name)
        if backing is None:
            raise _fail(errno.ENODATA)
        if not self.tree.is_attached(node):
            raise _fail(errno.ENOENT)
        if not self.tree.is_upper(node):
            # Nothing to remove means nothing to copy up (the kernel checks first).
            self.index.get_xattr(node, name)
        self._copy_up(node)
        self.disk.remove_xattr(node.path(), backing)
        self.refresh(node)

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def opens_for_write(flags: int) -> bool:
        return flags & os.O_ACCMODE != os.O_RDONLY or bool(flags & os.O_TRUNC)

    @one_change
    def open_for_write(self, node: Node, flags: int) -> int:
        """Copy ``node`` up (without data if it is being truncated) and open it;
        the answer is the descriptor."""
        return self._open_for_write(node, flags)

    def _open_for_write(self, node: Node, flags: int) -> int:
        if not self.tree.is_attached(node):
            raise _fail(errno.ENOENT)
        self._copy_up(node, with_data=not flags & os.O_TRUNC)
        fd = self.disk.open(node.path(), flags & (os.O_ACCMODE | os.O_TRUNC | os.O_SYNC
                                                  | os.O_DSYNC))
        if flags & os.O_TRUNC:
            self.refresh(node)
        return fd
