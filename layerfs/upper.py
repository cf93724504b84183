"""Writing through the merged view: the rules for names (whiteouts, opaque dirs, redirects).

:class:`Upper` carries out each write operation on the merged tree the way
the kernel overlay does (Documentation/filesystems/overlayfs.rst, and what
the kernel writes, checked by tests that run both side by side):

- an entry from a lower layer is copied up before it changes
  (:mod:`layerfs.copyup`); changes of an entry's data, attributes and xattrs
  are :mod:`layerfs.attrchanges`'s, which :class:`Upper` builds on;
- creating, linking, removing and renaming names are this module's;
- removing a name the lower layers show leaves a whiteout; a directory made
  where a whiteout is, or inside a merged directory, is opaque;
- renaming a lower or merged directory sets a redirect to where its lower
  layers hold it (``redirect_dir=on``), or fails with EXDEV (``off``).

It raises OSError with the kernel's errno and knows nothing of FUSE. Each
write method is one change (:func:`~layerfs.changes.one_change`): it
returns a :class:`~layerfs.changes.Change`, its answer and the inodes it
touched on the side, for the caller to invalidate. Each change is written
to disk by :class:`~layerfs.upperdir.UpperDir` first and then recorded in
the merged tree (:class:`~layerfs.tree.MergedTree`), so the tree never
shows a state the disk does not hold. What it reads of the layers
below (xattrs to copy, the names a whiteout must hide) it asks the
:class:`~layerfs.index.PathIndex`.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .attrchanges import AttributeChanges
from .changes import one_change
from .diskattrs import Attributes
from .hardlinkindex import HardlinkIndex
from .index import Node, PathIndex
from .inodes import InodeNumbers
from .upperdir import RENAME_EXCHANGE, RENAME_NOREPLACE, UpperDir

# The kernel's default limit (module parameter redirect_max) on a redirect's length.
REDIRECT_MAX = 256


def _fail(err: int) -> OSError:
    return OSError(err, os.strerror(err))


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks for a new object (its owner-to-be)."""

    uid: int
    gid: int


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


class Upper(AttributeChanges):
    """The write operations of a merged tree whose top layer is an upper dir."""

    def __init__(self, index: PathIndex, disk: UpperDir, *, redirect_dir: bool = True) -> None:
        super().__init__(index, disk)
        self.redirect_dir = redirect_dir

    # -- helpers -------------------------------------------------------------------

    def _child(self, parent: Node, name: bytes) -> Node:
        if parent.children is None:
            raise _fail(errno.ENOTDIR)
        node = parent.children.get(name)
        if node is None:
            raise _fail(errno.ENOENT)
        return node

    def _check_new_name(self, parent: Node, name: bytes) -> None:
        if parent.children is None:
            raise _fail(errno.ENOTDIR)
        if not self.tree.is_attached(parent):
            raise _fail(errno.ENOENT)
        if name in parent.children:
            raise _fail(errno.EEXIST)

    def lower_positive(self, parent: Node, name: bytes) -> bool:
        """Whether the layers below the upper show ``name`` in ``parent``: then
        removing it from the merged view takes a whiteout."""
        return name in self.index.lower_children(parent)

    # -- new entries -------------------------------------------------------------------

    @staticmethod
    def _owner(parent: Node, caller: Caller, mode: int) -> tuple[int, int, int]:
        """(uid, gid, mode) of a new entry: a set-group-ID dir hands down its group
        (and, to subdirs, the bit itself), as on any Linux filesystem."""
        gid = caller.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        return caller.uid, gid, mode

    def _create(self, parent: Node, name: bytes, mode: int, caller: Caller, *,
                rdev: int = 0, target: bytes = b"", open_flags: int | None = None
                ) -> tuple[Node, int | None]:
        self._check_new_name(parent, name)
        self._copy_up(parent)
        relpath = _join(parent.path(), name)
        over_whiteout = self.disk.is_whiteout(relpath)
        uid, gid, mode = self._owner(parent, caller, mode)
        is_dir = stat.S_ISDIR(mode)
        # A new dir must not merge with what the lower layers hold at its name.
        # In a merged parent the kernel also marks it opaque (an optimization),
        # but only when it makes redirects: else offline changes to the lower
        # layers are allowed, and the mark would hide them.
        opaque = is_dir and (over_whiteout or self.redirect_dir and self.tree.has_lower(parent))
        temp, fd = self.disk.build_new(Attributes(mode, uid, gid, rdev), target=target,
                                       opaque=opaque, open_flags=open_flags)
        try:
            self.disk.install(temp, relpath, over_whiteout=over_whiteout)
        except BaseException:
            if fd is not None:
                os.close(fd)
            self.disk.discard(temp)
            raise
        node = self.tree.add(parent, name, self.disk.lstat(relpath))
        if node.ino != InodeNumbers.natural(relpath):
            self._keep_number(node, fresh=True)
        self.refresh(parent)
        return node, fd

    @one_change
    def create(self, parent: Node, name: bytes, mode: int, caller: Caller,
               open_flags: int) -> tuple[Node, int]:
        """A new regular file, opened with ``open_flags``; returns it and the descriptor."""
        flags = open_flags & (os.O_ACCMODE | os.O_SYNC | os.O_DSYNC)
        node, fd = self._create(parent, name, stat.S_IFREG | stat.S_IMODE(mode), caller,
                                open_flags=flags)
        assert fd is not None
        return node, fd

    @one_change
    def mkdir(self, parent: Node, name: bytes, mode: int, caller: Caller) -> Node:
        return self._create(parent, name, stat.S_IFDIR | stat.S_IMODE(mode), caller)[0]

    @one_change
    def mknod(self, parent: Node, name: bytes, mode: int, rdev: int, caller: Caller) -> Node:
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind == stat.S_IFCHR and rdev == 0:
            # The kernel refuses to make something that reads as a whiteout.
            raise _fail(errno.EPERM)
        if kind not in (stat.S_IFREG, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise _fail(errno.EINVAL)
        return self._create(parent, name, kind | stat.S_IMODE(mode), caller, rdev=rdev)[0]

    @one_change
    def symlink(self, parent: Node, name: bytes, target: bytes, caller: Caller) -> Node:
        return self._create(parent, name, stat.S_IFLNK | 0o777, caller, target=target)[0]

    @one_change
    def link(self, node: Node, parent: Node, name: bytes) -> Node:
        """A new name for ``node``'s inode."""
        if node.children is not None:
            raise _fail(errno.EPERM)
        if not self.tree.is_attached(node):
            raise _fail(errno.ENOENT)
        self._check_new_name(parent, name)
        self._copy_up(node)
        self._copy_up(parent)
        relpath = _join(parent.path(), name)
        if self.disk.is_whiteout(relpath):
            temp = self.disk.build_link(node.path())
            try:
                self.disk.install(temp, relpath, over_whiteout=True)
            except BaseException:
                self.disk.discard(temp)
                raise
        else:
            self.disk.link(node.path(), relpath)
        alias = self.tree.add_link(node, parent, name)
        self.tree.set_stat(node, self.disk.lstat(relpath))
        self._keep_number(alias, fresh=True)
        self.refresh(parent)
        return alias

    # -- removal -------------------------------------------------------------------------

    @one_change
    def unlink(self, parent: Node, name: bytes) -> Node:
        node = self._child(parent, name)
        if node.children is not None:
            raise _fail(errno.EISDIR)
        self._remove(parent, node)
        return node

    @one_change
    def rmdir(self, parent: Node, name: bytes) -> Node:
        node = self._child(parent, name)
        if node.children is None:
            raise _fail(errno.ENOTDIR)
        if node.children:
            raise _fail(errno.ENOTEMPTY)
        self._remove(parent, node)
        return node

    def _remove(self, parent: Node, node: Node) -> None:
        if self.indexes(node):
            # As the kernel: the index keeps the group's link count, so the
            # name is linked up before it goes.
            self._copy_up(node)
        self._copy_up(parent)
        relpath = node.path()
        if self.lower_positive(parent, node.name):
            self.disk.whiteout(relpath)
        else:
            self.disk.remove(relpath)
        self._forget_name(node)
        self.refresh(parent)

    def _forget_name(self, node: Node) -> None:
        """Record that ``node``'s name is gone; its other names see one link less."""
        others = [alias for alias in self.tree.aliases(node) if alias is not node]
        self.tree.remove(node)
        if others:
            self.refresh(others[0])
            self._touch(node.ino)
        elif node.children is None:
            node.nlink = 0
            self.forget_index_entry(node)

    # -- rename ------------------------------------------------------------------------------

    @one_change
    def rename(self, old_parent: Node, old_name: bytes, new_parent: Node, new_name: bytes,
               flags: int = 0) -> Node | None:
        """Move ``old_name`` to ``new_name``; returns the node it replaced, if any."""
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or \
                flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE:
            raise _fail(errno.EINVAL)
        node = self._child(old_parent, old_name)
        if new_parent.children is None:
            raise _fail(errno.ENOTDIR)
        target = new_parent.children.get(new_name)
        if flags & RENAME_EXCHANGE:
            if target is None:
                raise _fail(errno.ENOENT)
            self._exchange(node, target)
            return None
        if target is node:
            return None
        if node.children is not None and self._contains(node, new_parent):
            raise _fail(errno.EINVAL)
        if target is not None:
            # The VFS's checks first, then the overlay's (EXDEV before ENOTEMPTY).
            if flags & RENAME_NOREPLACE:
                raise _fail(errno.EEXIST)
            if target.ino == node.ino:
                return None  # two names of one inode: rename(2) does nothing
            if node.children is not None and target.children is None:
                raise _fail(errno.ENOTDIR)
            if node.children is None and target.children is not None:
                raise _fail(errno.EISDIR)
        redirect = self._redirect_for(node, new_parent is old_parent)
        if target is not None and target.children:
            raise _fail(errno.ENOTEMPTY)
        self._copy_up(node, with_data=True)
        if target is not None and self.indexes(target):
            self._copy_up(target)  # as the kernel: see _remove
        self._copy_up(new_parent)
        old_rel = node.path()
        new_rel = _join(new_parent.path(), new_name)
        whiteout_old = self.lower_positive(old_parent, old_name)
        if node.children is not None:
            self._prepare_moved_dir(node, old_rel, new_parent, redirect)
        if target is not None and self.tree.is_upper(target) and target.children is not None \
                and self.disk.has_entries(new_rel):
            # Its whiteouts would keep rename(2) from replacing it.
            self.disk.clear_dir(new_rel)
        if target is None and node.children is not None and self.disk.is_whiteout(new_rel):
            # A dir cannot replace a whiteout device: swap them; the whiteout
            # then sits at the old name, where it is wanted or removed.
            self.disk.rename(old_rel, new_rel, exchange=True)
            if not whiteout_old:
                self.disk.remove(old_rel)
        else:
            self.disk.rename(old_rel, new_rel, whiteout_old=whiteout_old)
        if target is not None:
            self._forget_name(target)
        self.tree.move(node, new_parent, new_name)
        self._keep_number(node)
        self.refresh(old_parent)
        if new_parent is not old_parent:
            self.refresh(new_parent)
        self.refresh(node)
        return target

    def _exchange(self, one: Node, other: Node) -> None:
        """RENAME_EXCHANGE: both names stay, so no whiteouts; moved dirs get a
        redirect or an opaque mark as in a plain move."""
        if one is other or one.ino == other.ino:
            return
        for node, dest in ((one, other), (other, one)):
            if node.children is not None and self._contains(node, dest.parent):
                raise _fail(errno.EINVAL)
        one_parent, other_parent = one.parent, other.parent
        assert one_parent is not None and other_parent is not None
        one_redirect = self._redirect_for(one, one_parent is other_parent)
        other_redirect = self._redirect_for(other, one_parent is other_parent)
        self._copy_up(one)
        self._copy_up(other)
        one_rel, other_rel = one.path(), other.path()
        if one.children is not None:
            self._prepare_moved_dir(one, one_rel, other_parent, one_redirect)
        if other.children is not None:
            self._prepare_moved_dir(other, other_rel, one_parent, other_redirect)
        self.disk.rename(one_rel, other_rel, exchange=True)
        self.tree.exchange(one, other)
        self._keep_number(one)
        self._keep_number(other)
        for node in (one_parent, other_parent, one, other):
            self.refresh(node)

    @staticmethod
    def _contains(directory: Node, node: Node | None) -> bool:
        while node is not None:
            if node is directory:
                return True
            node = node.parent
        return False

    def _redirect_for(self, node: Node, same_parent: bool) -> bytes | None:
        """The redirect a moved dir needs (None if it has no lower layers), or EXDEV."""
        if node.children is None or not self.tree.has_lower(node):
            return None
        if not self.redirect_dir:
            raise _fail(errno.EXDEV)
        existing = self._upper_redirect(node)
        if existing and (same_parent or existing.startswith(b"/")):
            value = existing  # still right: it moves within its parent, or is absolute
        elif same_parent:
            value = node.name
        else:
            value = self._absolute_redirect(node)
        if len(value) > REDIRECT_MAX:
            raise _fail(errno.EXDEV)
        return value

    def _upper_redirect(self, node: Node) -> bytes | None:
        return self.disk.redirect(node.path()) if self.tree.is_upper(node) else None

    def _absolute_redirect(self, node: Node) -> bytes:
        """Where the layers below hold ``node``, from the root: its path, each
        component replaced by the upper redirect of the dir there (the kernel's
        ``ovl_get_redirect``; lookups below rewrite it through lower redirects)."""
        parts = []
        current = node
        while current.parent is not None:
            value = self._upper_redirect(current)
            if value and value.startswith(b"/"):
                parts.append(value.strip(b"/"))
                break
            parts.append(value or current.name)
            current = current.parent
        return b"/" + b"/".join(reversed(parts))

    def _prepare_moved_dir(self, node: Node, relpath: bytes, new_parent: Node,
                           redirect: bytes | None) -> None:
        if redirect is not None:
            self.disk.set_redirect(relpath, redirect)
        elif self.tree.has_lower(new_parent) and not self.disk.is_opaque(relpath):
            # A pure upper dir must not start merging with lower dirs at its new name.
            self.disk.set_opaque(relpath)
            self.tree.made_opaque(node)


def default_workdir(upperdir: str) -> str:
    """Where ``--upper DIR`` puts its work dir when none is given: a hidden
    sibling, since the kernel wants it on the same filesystem and outside."""
    upperdir = os.path.abspath(upperdir)
    parent, name = os.path.split(upperdir.rstrip("/"))
    return os.path.join(parent, f".{name}.work")


def open_writable(layers: list, upperdir: str, workdir: str | None, *,
                  userxattr: bool | None = None, redirect_dir: str | None = None,
                  volatile: bool = False, read_only: bool = False, index: bool = False
                  ) -> tuple[PathIndex, Upper | None]:
    """The merged index of ``layers`` (bottom first) under the upper dir, and the
    :class:`Upper` that writes it (None for a read-only mount). Checks and
    prepares the dirs as the kernel does; without root the overlay xattrs are
    ``user.overlay.*``, and then directory renames are EXDEV unless
    ``redirect_dir=on`` is asked for (the kernel does not follow redirects
    with userxattr, so it could not mount such an upper). ``index``: hard-linked
    lower files are copied up through the work dir's inode index, as the
    kernel's ``index=on`` (:mod:`layerfs.hardlinkindex`)."""
    from .errors import MountError
    from .layer import Layer

    if read_only:
        top = Layer(root=os.path.abspath(upperdir), label="upper", upper=True)
        if not os.path.isdir(top.root):
            raise MountError(f"{upperdir}: no such directory")
        return PathIndex([*layers, top]), None
    if workdir is None:
        workdir = default_workdir(upperdir)
        os.makedirs(workdir, exist_ok=True)
    if userxattr is None:
        userxattr = os.geteuid() != 0
    disk = UpperDir(upperdir, workdir, userxattr=userxattr, fsync=not volatile)
    disk.prepare()
    top = Layer(root=os.fsdecode(disk.root), label="upper", upper=True)
    if any(os.path.realpath(layer.root) == os.path.realpath(top.root) for layer in layers):
        raise MountError(f"{upperdir}: the upper dir is also a lower layer")
    hardlinks = None
    if index:
        hardlinks = HardlinkIndex(disk.workdir, disk.prefix)
        hardlinks.prepare()
    merged = PathIndex([*layers, top], hardlinks=hardlinks)
    # The kernel does not follow redirects with userxattr (it refuses
    # redirect_dir=on there): by default, an upper it can mount takes none.
    default = "off" if userxattr else "on"
    return merged, Upper(merged, disk, redirect_dir=(redirect_dir or default) == "on")
