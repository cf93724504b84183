"""Upper's decisions without FUSE: each change lands on disk in the kernel's format,
and the live index always equals a fresh scan of the layers."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from layerfs.index import PathIndex
from layerfs.layer import Layer
from layerfs.upper import Caller, Upper, open_writable
from tests.support.layerspec import Dir, File, Whiteout, materialize_stack

ROOT = Caller(0, 0)


def build(scratch: Path, stack: list[dict]) -> Upper:
    lowers = materialize_stack(stack, scratch, "native")
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    layers = [Layer(root=str(p), label=p.name) for p in lowers]
    index, upper = open_writable(layers, str(scratch / "upper"), str(scratch / "work"))
    assert upper is not None
    return upper


def view(index: PathIndex) -> dict[bytes, tuple]:
    return {path: (stat.S_IFMT(node.mode), stat.S_IMODE(node.mode), node.size,
                   node.layers if node.children is not None else None)
            for path, node in index.walk()}


def assert_index_matches_disk(upper: Upper) -> None:
    fresh = PathIndex(upper.index.layers)
    assert view(upper.index) == view(fresh)


def node(upper: Upper, path: str):
    found = upper.index.resolve(path)
    assert found is not None, path
    return found


STACK = [
    {b"d/a": File(b"a"), b"d/b": File(b"b"), b"d/sub/x": File(b"x"), b"e/f": File(b"f"),
     b"file": File(b"content", mode=0o640)},
    {b"d/b": Whiteout(), b"d/c": File(b"c"), b"o": Dir(opaque=True), b"o/in": File(b"in")},
]


def test_copy_up_keeps_inode_number_metadata_and_parent_times(scratch, needs_root):
    upper = build(scratch, STACK)
    target = node(upper, "d/sub/x")
    ino, mtime = target.ino, target.mtime_ns
    parent_mtime = node(upper, "d/sub").mtime_ns
    upper.copy_up(target)
    assert upper.index.is_upper(target) and target.ino == ino and target.mtime_ns == mtime
    on_disk = os.lstat(scratch / "upper/d/sub/x")
    assert on_disk.st_mtime_ns == mtime
    assert os.lstat(scratch / "upper/d/sub").st_mtime_ns == parent_mtime
    assert (scratch / "upper/d/sub/x").read_bytes() == b"x"
    assert os.listdir(scratch / "work/work") == []
    assert_index_matches_disk(upper)


def test_unlink_whiteouts_and_mkdir_over_them(scratch, needs_root):
    upper = build(scratch, STACK)
    upper.unlink(node(upper, "d"), b"a")
    assert stat.S_ISCHR(os.lstat(scratch / "upper/d/a").st_mode)
    upper.mkdir(node(upper, "d"), b"a", 0o755, ROOT)
    assert os.getxattr(scratch / "upper/d/a", "trusted.overlay.opaque") == b"y"
    upper.rmdir(node(upper, "d"), b"a")
    assert stat.S_ISCHR(os.lstat(scratch / "upper/d/a").st_mode)
    new, fd = upper.create(node(upper, ""), b"fresh", 0o600, ROOT, os.O_WRONLY).value
    os.close(fd)
    upper.unlink(node(upper, ""), b"fresh")
    assert not os.path.lexists(scratch / "upper/fresh")
    assert_index_matches_disk(upper)


def test_errors_are_the_kernel_errnos(scratch, needs_root):
    upper = build(scratch, STACK)
    root = node(upper, "")
    cases = [
        (lambda: upper.rmdir(root, b"d"), errno.ENOTEMPTY),
        (lambda: upper.unlink(root, b"d"), errno.EISDIR),
        (lambda: upper.rmdir(root, b"file"), errno.ENOTDIR),
        (lambda: upper.mkdir(root, b"d", 0o755, ROOT), errno.EEXIST),
        (lambda: upper.unlink(node(upper, "d"), b"b"), errno.ENOENT),
        (lambda: upper.rename(root, b"d", root, b"e"), errno.ENOTEMPTY),
        (lambda: upper.rename(root, b"file", root, b"d"), errno.EISDIR),
        (lambda: upper.rename(root, b"d", node(upper, "d/sub"), b"x"), errno.EINVAL),
        (lambda: upper.mknod(root, b"w", stat.S_IFCHR, 0, ROOT), errno.EPERM),
        (lambda: upper.link(node(upper, "d"), root, b"l"), errno.EPERM),
    ]
    for action, expected in cases:
        with pytest.raises(OSError) as raised:
            action()
        assert raised.value.errno == expected
    assert os.listdir(scratch / "upper") == []
    assert_index_matches_disk(upper)


def test_directory_rename_sets_a_redirect_and_remount_follows_it(scratch, needs_root):
    upper = build(scratch, STACK)
    root = node(upper, "")
    upper.rename(root, b"d", root, b"moved")
    assert os.getxattr(scratch / "upper/moved", "trusted.overlay.redirect") == b"d"
    upper.rename(node(upper, "moved"), b"sub", node(upper, "e"), b"sub")
    assert os.getxattr(scratch / "upper/e/sub", "trusted.overlay.redirect") == b"/d/sub"
    assert sorted(node(upper, "moved").children) == [b"a", b"c"]
    assert_index_matches_disk(upper)
    upper.redirect_dir = False
    with pytest.raises(OSError) as raised:
        upper.rename(node(upper, ""), b"e", node(upper, ""), b"e2")
    assert raised.value.errno == errno.EXDEV


def test_hard_linked_lower_names_are_copied_up_together(scratch, needs_root):
    from tests.support.layerspec import Hardlink
    upper = build(scratch, [{b"h1": File(b"x"), b"dir/h2": Hardlink(b"h1")}, {b"other": File()}])
    first = node(upper, "h1")
    fd = upper.open_for_write(first, os.O_WRONLY).value
    os.write(fd, b"y")
    os.close(fd)
    assert os.lstat(scratch / "upper/h1").st_ino == os.lstat(scratch / "upper/dir/h2").st_ino
    assert node(upper, "dir/h2").nlink == 2
    upper.unlink(node(upper, ""), b"h1")
    assert node(upper, "dir/h2").nlink == 1


def test_inode_numbers_survive_renames_and_remounts(scratch, needs_root):
    upper = build(scratch, STACK)
    root = node(upper, "")
    numbers = {"file": node(upper, "file").ino, "d": node(upper, "d").ino,
               "e/f": node(upper, "e/f").ino}
    upper.rename(root, b"file", root, b"moved")
    upper.rename(root, b"d", node(upper, "e"), b"d2")
    upper.rename(node(upper, "e"), b"f", root, b"f2")
    upper.unlink(root, b"moved")
    made, fd = upper.create(root, b"file", 0o644, ROOT, os.O_WRONLY).value  # tombstoned
    os.close(fd)
    linked = upper.link(node(upper, "f2"), root, b"f3").value
    upper.rename(root, b"f3", node(upper, "e/d2"), b"f4")
    again = PathIndex(upper.index.layers)
    assert again.resolve("e/d2").ino == numbers["d"]
    assert again.resolve("f2").ino == numbers["e/f"] == again.resolve("e/d2/f4").ino
    assert again.resolve("file").ino == made.ino != numbers["file"]
    assert linked.ino == numbers["e/f"]
