"""The merged tree alone, without reading any layer: nodes made from stat results,
directories filled by a loader callback, and the changes the upper records."""

from __future__ import annotations

import os
import stat

from layerfs.inodes import ROOT_INODE
from layerfs.tree import DataElsewhere, MergedTree, Node

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644
UPPER, MIDDLE, BOTTOM = 2, 1, 0


def st(mode: int, size: int = 0, nlink: int = 1, mtime_ns: int = 10**9) -> os.stat_result:
    return os.stat_result((mode, 0, 0, nlink, 0, 0, size, 1, mtime_ns // 10**9, 1),
                          {"st_atime_ns": 10**9, "st_mtime_ns": mtime_ns,
                           "st_ctime_ns": 10**9, "st_blocks": 0, "st_rdev": 0})


class FakeLoader:
    """Fills directories from a table (path -> {name: (mode, layers)}), counting reads."""

    def __init__(self, table: dict[bytes, dict[bytes, tuple[int, tuple[int, ...]]]]) -> None:
        self.table = table
        self.reads: list[bytes] = []
        self.tree: MergedTree | None = None

    def __call__(self, directory: Node) -> None:
        assert self.tree is not None
        path = directory.path()
        self.reads.append(path)
        children = {}
        for name, (mode, layers) in sorted(self.table.get(path, {}).items()):
            child_path = path + b"/" + name if path else name
            loader = self if stat.S_ISDIR(mode) else None
            children[name] = Node(self.tree.inodes.assign(child_path), name, directory,
                                  layers[0], st(mode), layers=layers, loader=loader)
        self.tree.attach(directory, directory.listed_layers, children)


TABLE = {
    b"": {b"etc": (DIR, (UPPER, BOTTOM)), b"lib": (DIR, (BOTTOM,)), b"f": (FILE, (MIDDLE,))},
    b"etc": {b"passwd": (FILE, (BOTTOM,)), b"new": (FILE, (UPPER,))},
    b"lib": {b"a": (FILE, (BOTTOM,))},
}


def make_tree(upper: int | None = UPPER) -> tuple[MergedTree, FakeLoader]:
    loader = FakeLoader(TABLE)
    tree = MergedTree(st(DIR), UPPER, (UPPER, MIDDLE, BOTTOM), upper=upper, loader=loader)
    loader.tree = tree
    return tree, loader


def test_directories_are_read_once_when_first_asked():
    tree, loader = make_tree()
    assert not tree.root.is_read and loader.reads == []
    assert tree.root.ino == ROOT_INODE and tree.get(ROOT_INODE) is tree.root
    etc = tree.resolve("etc")
    assert etc is not None and not etc.is_read and loader.reads == [b""]
    assert sorted(etc.children) == [b"new", b"passwd"]
    assert loader.reads == [b"", b"etc"]
    assert tree.resolve("/etc/../etc/./passwd").path() == b"etc/passwd"
    assert tree.resolve("etc/passwd/x") is None and tree.resolve("nothing") is None
    assert etc.is_merged_dir and etc.shown_nlink == 1 and not tree.resolve("lib").is_merged_dir
    assert [path for path, _ in tree.walk()] == [b"", b"etc", b"etc/new", b"etc/passwd",
                                                 b"f", b"lib", b"lib/a"]
    assert loader.reads == [b"", b"etc", b"lib"]
    assert len(tree) == 1 + 3 + 2 + 1


def test_add_remove_and_forget():
    tree, _ = make_tree()
    etc = tree.resolve("etc")
    node = tree.add(etc, b"hosts", st(FILE, size=5))
    assert tree.resolve("etc/hosts") is node and tree.is_upper(node) and node.size == 5
    assert etc.listing() == [b"hosts", b"new", b"passwd"]
    assert tree.get(node.ino) is node and tree.is_attached(node)
    tree.remove(node)
    assert etc.listing() == [b"new", b"passwd"] and not tree.is_attached(node)
    assert tree.get(node.ino) is node  # the kernel may still hold it
    tree.forget(node.ino)
    assert tree.get(node.ino) is None


def test_hard_links_share_attributes_and_outlive_a_name():
    tree, _ = make_tree()
    target = tree.add(tree.resolve("etc"), b"one", st(FILE, size=1))
    alias = tree.add_link(target, tree.resolve("lib"), b"two")
    assert alias.ino == target.ino and tree.aliases(target) == [target, alias]
    tree.set_stat(alias, st(FILE, size=9, nlink=2))
    assert (target.size, target.nlink) == (9, 2) == (alias.size, alias.nlink)
    tree.remove(target)
    assert tree.get(target.ino) is alias and tree.aliases(alias) == [alias]
    tree.forget(target.ino)
    assert tree.get(alias.ino) is alias  # it still has a name


def test_moving_a_merged_dir_keeps_its_lower_copies_where_they_are():
    tree, _ = make_tree()
    etc, lib = tree.resolve("etc"), tree.resolve("lib")
    tree.move(etc, lib, b"etc2")
    assert tree.resolve("lib/etc2") is etc and tree.resolve("etc") is None
    assert tree.relpath_in(etc, BOTTOM) == b"etc"  # redirected
    assert tree.relpath_in(tree.resolve("lib/etc2/passwd"), BOTTOM) == b"etc/passwd"
    assert tree.relpath_in(etc, UPPER) == b"lib/etc2"
    assert tree.root.listing() == [b"f", b"lib"] and lib.listing() == [b"a", b"etc2"]


def test_exchange_swaps_two_names():
    tree, _ = make_tree()
    f, lib = tree.resolve("f"), tree.resolve("lib")
    tree.exchange(f, lib)
    assert tree.resolve("f") is lib and tree.resolve("lib") is f
    assert (lib.name, f.name) == (b"f", b"lib")
    assert tree.relpath_in(lib, BOTTOM) == b"lib"  # a lower dir: redirected


def test_copy_up_and_opaque():
    tree, _ = make_tree()
    f, lib = tree.resolve("f"), tree.resolve("lib")
    tree.data_elsewhere[f.ino] = DataElsewhere(MIDDLE, b"f", 8)
    tree.copied_up(f, st(FILE, size=3))
    assert tree.is_upper(f) and f.size == 3 and f.ino not in tree.data_elsewhere
    assert tree.has_lower(lib)
    tree.copied_up(lib, st(DIR))
    assert lib.layers == (UPPER, BOTTOM) and tree.has_lower(lib)
    lib.lower_children = {}
    tree.made_opaque(lib)
    assert lib.layers == (UPPER,) and not tree.has_lower(lib) and lib.lower_children is None


def test_aliases_have_every_directory_read_first_when_names_may_be_unread():
    tree, loader = make_tree()
    tree.resolve("f")
    asked = []
    tree.unseen_links = lambda ino: not asked
    tree.read_everything = lambda: asked.append(True)
    assert tree.aliases(tree.resolve("f")) == [tree.resolve("f")] and asked == [True]


def test_a_new_alias_copies_the_attributes():
    tree, _ = make_tree()
    target = tree.add(tree.root, b"t", st(FILE, size=4, mtime_ns=5 * 10**9 + 7))
    alias = tree.add_link(target, tree.root, b"u")
    assert (alias.mode, alias.size, alias.mtime_ns) == (FILE, 4, 5 * 10**9 + 7)
