"""Hard-linked lower files with ``index=on``: copied up the kernel's inode index way.

The kernel, with ``index=on``, copies up only the name of a lower hard-linked
file that changes, keeps the group one inode through ``WORKDIR/index/<hex of
the origin handle>`` and links each other name up when that name changes
(or is removed or renamed). layerfs, asked for ``index=on``, must leave the
same upper and index entries, show the same tree, and each must mount what
the other wrote. Without it layerfs keeps copying the group up whole (its
default, tested in test_ops_vs_kernel).

The operations here come by name (rename, unlink, a write through the group's
first name): a change FUSE passes by inode alone (a write, chmod, link(2)'s
source) cannot tell which name was used, and links up the name layerfs met
first (see README "Semantics").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from layerfs.hardlinkindex import file_handle, origin_handle
from layerfs.layer import Layer
from layerfs.upper import open_writable
from tests.support.layerspec import File, Hardlink
from tests.support.overlaypair import OverlayPair, reset_work

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay", "needs_root", "each_engine")


def stack() -> list[dict]:
    return [{
        b"a": File(b"linked data\n", mode=0o640),
        b"sub/b": Hardlink(b"a"),
        b"sub/c": Hardlink(b"a"),
        b"d": Hardlink(b"a"),
        b"other": File(b"other\n"),
        b"p": File(b"pair\n"),
        b"q": Hardlink(b"p"),
    }]


def index_pair(scratch: Path) -> OverlayPair:
    return OverlayPair(scratch, stack(), kernel_options=["index=on"],
                       layerfs_options=["index=on"])


def append(name: str, data: bytes):
    def operation(root: Path) -> None:
        with open(root / name, "ab") as file:
            file.write(data)
    operation.__name__ = f"append {name}"
    return operation


def rename(old: str, new: str):
    def operation(root: Path) -> None:
        os.rename(root / old, root / new)
    operation.__name__ = f"rename {old} {new}"
    return operation


def unlink(name: str):
    def operation(root: Path) -> None:
        os.unlink(root / name)
    operation.__name__ = f"unlink {name}"
    return operation


def set_xattr(name: str, xattr: str, value: bytes):
    def operation(root: Path) -> None:
        os.setxattr(root / name, xattr, value)
    operation.__name__ = f"setxattr {name} {xattr}"
    return operation


SCENARIOS = {
    "write one name": [append("a", b"more\n")],
    "unlink a name not copied up": [unlink("sub/b")],
    "rename a name not copied up": [rename("sub/c", "moved")],
    "write, then rename and unlink the others": [
        append("a", b"more\n"), rename("sub/b", "b2"), unlink("d")],
    "write, then unlink the written name": [append("a", b"more\n"), unlink("a")],
    "rename over a name of the group": [rename("d", "sub/b")],
    "rename another file over a name": [rename("other", "sub/c")],
    "unlink every name": [unlink("a"), unlink("sub/b"), unlink("sub/c"), unlink("d")],
    "rename, then write through the new name": [
        rename("q", "q2"), append("q2", b"more\n")],
}


def upper_names(upper: Path) -> list[str]:
    """Every path in an upper dir, with its type and link count (whiteouts: the
    kernel shares one inode among its whiteouts, so no count)."""
    found = []
    for directory, dirs, files in os.walk(upper):
        for name in sorted(dirs + files):
            path = Path(directory) / name
            st = os.lstat(path)
            kind = ("dir" if stat.S_ISDIR(st.st_mode) else
                    "whiteout" if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else
                    f"file {st.st_nlink}")
            found.append(f"{path.relative_to(upper)} {kind}")
    return sorted(found)


def index_entries(work: Path) -> list[tuple[str, int, bytes]]:
    """The index dir's entries (not the kernel's temporary '#' whiteouts): name,
    link count, nlink xattr."""
    index = work / "index"
    if not index.exists():
        return []
    return sorted((name, os.lstat(index / name).st_nlink,
                   os.getxattr(index / name, "trusted.overlay.nlink", follow_symlinks=False))
                  for name in os.listdir(index) if not name.startswith("#"))


def group_view(root: Path) -> dict[str, tuple]:
    """What the merged view shows of the files: content, nlink and which names
    share an inode (numbered by first appearance)."""
    shown, inodes = {}, {}
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(directory) / name
            st = os.lstat(path)
            group = inodes.setdefault(st.st_ino, len(inodes))
            shown[str(path.relative_to(root))] = (path.read_bytes(), st.st_nlink, group)
    return shown


def expected_index_name(side_lower: Path, path: str) -> str:
    """The kernel's index name of a lower file, computed here independently."""
    handle_type, handle = file_handle(os.fsencode(side_lower / path))
    uuid = bytes(16)  # this machine's test filesystems: checked against the kernel below
    return origin_handle(handle_type, handle, uuid).hex()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_as_kernel(scratch, scenario):
    pair = index_pair(scratch)
    with pair.mounted():
        for operation in SCENARIOS[scenario]:
            pair.apply(operation)
        pair.check()
        assert group_view(pair.layerfs.mnt) == group_view(pair.kernel.mnt)
    assert upper_names(pair.layerfs.upper) == upper_names(pair.kernel.upper)
    assert not pair.upper_differences()
    kernel_index, layerfs_index = index_entries(pair.kernel.work), index_entries(pair.layerfs.work)
    # The names differ (each side's lower files have their own inodes) but not
    # their number, link counts or nlink xattrs.
    assert [entry[1:] for entry in layerfs_index] == [entry[1:] for entry in kernel_index]
    # Each side names its entries by its own lower file's handle, the same way.
    for side, entries in ((pair.kernel, kernel_index), (pair.layerfs, layerfs_index)):
        lower = side.lowers[0]
        wanted = {expected_index_name(lower, "a"), expected_index_name(lower, "p")}
        assert {name for name, _, _ in entries} <= wanted, side.name
    # After a remount of each, the same again.
    with pair.mounted():
        pair.check()
        assert group_view(pair.layerfs.mnt) == group_view(pair.kernel.mnt)


@pytest.mark.parametrize("scenario", ["write, then rename and unlink the others",
                                      "write, then unlink the written name",
                                      "unlink a name not copied up"])
def test_each_mounts_the_others_upper(scratch, scenario):
    """The kernel mounts what layerfs wrote, layerfs what the kernel wrote: all
    names show the new data and one inode, as on the side that wrote them."""
    pair = index_pair(scratch)
    with pair.mounted():
        for operation in SCENARIOS[scenario]:
            pair.apply(operation)
        wanted = group_view(pair.kernel.mnt)
    kernel, layerfs = pair.kernel, pair.layerfs
    kernel.upper, layerfs.upper = layerfs.upper, kernel.upper
    kernel.work, layerfs.work = layerfs.work, kernel.work
    kernel.lowers, layerfs.lowers = layerfs.lowers, kernel.lowers
    with pair.kernel_mounted() as mnt:
        assert group_view(mnt) == wanted, "the kernel on layerfs's upper"
    # The kernel's work dir holds its own temporary entries: layerfs starts from
    # its index alone, as a fresh kernel mount would.
    with pair.layerfs_mounted() as mnt:
        assert group_view(mnt) == wanted, "layerfs on the kernel's upper"


def test_index_name_is_the_kernels(scratch):
    """The entry the kernel makes is named as layerfs computes it."""
    pair = index_pair(scratch)
    with pair.kernel_mounted() as mnt:
        append("a", b"x")(mnt)
    names = [name for name, _, _ in index_entries(pair.kernel.work)]
    assert names == [expected_index_name(pair.kernel.lowers[0], "a")]


def test_without_index_the_group_is_copied_up_whole(scratch):
    """layerfs's default: every name of the group in the upper, no index dir."""
    pair = OverlayPair(scratch, stack())
    with pair.layerfs_mounted() as mnt:
        append("a", b"more\n")(mnt)
        view = group_view(mnt)
    assert {view[name][2] for name in ("a", "sub/b", "sub/c", "d")} == {view["a"][2]}
    assert [line for line in upper_names(pair.layerfs.upper) if line.startswith(("a ", "d "))] \
        == ["a file 4", "d file 4"]
    assert not (pair.layerfs.work / "index").exists()
    reset_work(pair.layerfs)


def test_link_up_after_a_remount(scratch):
    """A remounted layerfs finds the index entry and links the other names up
    from it, as the kernel does."""
    pair = index_pair(scratch)
    with pair.mounted():
        pair.apply(append("a", b"more\n"))
    with pair.mounted():
        pair.apply(rename("sub/b", "b2"))
        pair.apply(unlink("d"))
        pair.apply(append("b2", b"again\n"))
        pair.check()
        assert group_view(pair.layerfs.mnt) == group_view(pair.kernel.mnt)
    assert upper_names(pair.layerfs.upper) == upper_names(pair.kernel.upper)
    assert [entry[1:] for entry in index_entries(pair.layerfs.work)] == \
        [entry[1:] for entry in index_entries(pair.kernel.work)]


def test_lower_names_show_the_groups_xattrs_after_a_remount(scratch):
    """The names still lower of an indexed group show the upper inode's xattrs,
    as they show its attributes, also after a remount."""
    pair = index_pair(scratch)
    with pair.mounted():
        pair.apply(set_xattr("a", "user.tag", b"changed"))
    with pair.mounted():
        shown = {}
        for side in (pair.kernel, pair.layerfs):
            shown[side.name] = [(name, os.getxattr(side.mnt / name, "user.tag"),
                                 "user.tag" in os.listxattr(side.mnt / name))
                                for name in ("d", "sub/b", "sub/c", "a")]
        assert shown["layerfs"] == shown["kernel"]
        assert shown["kernel"][0] == ("d", b"changed", True)
    assert upper_names(pair.layerfs.upper) == upper_names(pair.kernel.upper)


def test_a_lower_name_shows_the_xattrs_before_the_upper_name_is_read(scratch):
    """Right after a mount of what the kernel left (its upper name in a dir
    not read yet), a lower name of the group shows the upper inode's xattrs.
    In process, with the dir left unread: a mount reads it when idle."""
    pair = index_pair(scratch)
    with pair.kernel_mounted():
        os.setxattr(pair.kernel.mnt / "sub/b", "user.tag", b"changed")
    assert upper_names(pair.kernel.upper) == ["sub dir", "sub/b file 2"]
    layers = [Layer(root=str(lower), label=lower.name) for lower in pair.kernel.lowers]
    index, _ = open_writable(layers, str(pair.kernel.upper), str(pair.kernel.work), index=True)
    root = index.tree.root
    lower_name = index.lookup(root, b"d")
    upper_dir = index.lookup(root, b"sub")
    assert lower_name is not None and upper_dir is not None
    assert index.get_xattr(lower_name, b"user.tag") == b"changed"
    assert b"user.tag" in index.list_xattrs(lower_name)
    assert not upper_dir.is_read


@pytest.mark.parametrize("orphaned", [True, False])
def test_mount_cleans_the_index_as_the_kernel(scratch, orphaned):
    """On mount, the kernel removes the index's temporary '#' entries and its
    orphans (the index link alone, a merged count of 0: what a crash or an
    offline change leaves); an entry whose upper name went offline while lower
    names remain is kept. layerfs does the same."""
    pair = index_pair(scratch)
    with pair.mounted():
        pair.apply(append("a", b"more\n"))
    for side in (pair.kernel, pair.layerfs):
        index = side.work / "index"
        (entry,) = [name for name in os.listdir(index) if not name.startswith("#")]
        os.unlink(side.upper / "a")
        if orphaned:
            os.setxattr(index / entry, "trusted.overlay.nlink", b"U-1")
        (index / "#7f").write_bytes(b"cut short")
        (index / "#80").mkdir()
    with pair.mounted():
        assert group_view(pair.layerfs.mnt) == group_view(pair.kernel.mnt)
    kernel_left, layerfs_left = sorted(os.listdir(pair.kernel.work / "index")), \
        sorted(os.listdir(pair.layerfs.work / "index"))
    assert [name for name in kernel_left if name.startswith("#")] == []
    assert len(kernel_left) == (0 if orphaned else 1)
    assert [entry[1:] for entry in index_entries(pair.layerfs.work)] == \
        [entry[1:] for entry in index_entries(pair.kernel.work)]
    assert [name for name in layerfs_left if name.startswith("#")] == []
