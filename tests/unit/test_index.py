"""PathIndex over real layer directories (no FUSE): the merged tree, hard links, inodes."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from layerfs.index import PathIndex
from layerfs.layer import Layer
from tests.support.layerspec import Dir, File, Hardlink, Whiteout, materialize_stack
from tests.unit.test_merge import layers_strategy, model

TO_ITEM = {"file": lambda p: File(p), "dir": lambda p: Dir(), "opaque": lambda p: Dir(opaque=True),
           "whiteout": lambda p: Whiteout()}


def index_of(dirs: list[Path]) -> PathIndex:
    return PathIndex([Layer(str(d), label=d.name) for d in dirs])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers_strategy)
def test_index_of_oci_layers_equals_the_changeset_model(stack):
    specs = [{path: TO_ITEM[kind](path) for path, kind in layer.items()} for layer in stack]
    base = Path(tempfile.mkdtemp(prefix="layerfs-index-"))
    try:
        index = index_of(materialize_stack(specs, base, "oci"))
        seen = {path: (node.layer, node.is_dir) for path, node in index.walk() if path}
    finally:
        shutil.rmtree(base)
    assert seen == model(stack)


def test_hard_links_share_one_inode_and_merged_dirs_show_nlink_one(scratch):
    dirs = materialize_stack([
        {b"d/x": File(b"x"), b"solo/y": File(b"y")},
        {b"d/a": File(b"a"), b"d/b": Hardlink(b"d/a"), b"c": Hardlink(b"d/a")},
    ], scratch, "oci")
    index = index_of(dirs)
    a, b, c = (index.resolve(p) for p in ("d/a", "d/b", "c"))
    assert a.ino == b.ino == c.ino and a.nlink == 3
    assert index.resolve("d").shown_nlink == 1  # merged from two layers
    solo = index.resolve("solo")
    assert not solo.is_merged_dir and solo.shown_nlink == 2
    assert index.root.is_merged_dir


def test_markers_never_show_and_resolve_walks_paths(scratch):
    dirs = materialize_stack([{b"a/b": File(b"1")}, {b"a": Dir(opaque=True), b"a/c": File(b"2"),
                                                     b"gone": Whiteout()}], scratch, "oci")
    index = index_of(dirs)
    assert sorted(index.resolve("a").children) == [b"c"]
    assert index.resolve("/a/../a/./c") is index.resolve("a/c")
    assert index.resolve("a/b") is None
    assert all(b".wh." not in path for path, _ in index.walk())
    assert stat.S_ISDIR(index.root.mode)


def test_inodes_are_the_same_for_the_same_layers(scratch):
    dirs = materialize_stack([{b"x/y/z": File(b"1"), b"w": File(b"2")}], scratch, "oci")
    first = {path: node.ino for path, node in index_of(dirs).walk()}
    second = {path: node.ino for path, node in index_of(dirs).walk()}
    assert first == second and len(set(first.values())) == len(first)


def test_sidecar_metadata_is_applied(scratch):
    """What an unprivileged unpack could not store on disk shows as the image has it."""
    from layerfs.sidecar import Sidecar

    lower, upper = materialize_stack([
        {b"etc": Dir(mode=0o750, xattrs={b"user.from": b"lower"}), b"etc/old": File(b"o"),
         b"x" * 255: File(b"long")},
        {b"etc/new": File(b"n"), b"dev/null": File(b"")},
    ], scratch, "oci")
    sidecar = Sidecar(
        owner=(0, 0),
        stats={b"dev/null": (0, 0, stat.S_IFCHR | 0o666, os.makedev(1, 3))},
        whiteouts={b"": {b"x" * 255}},
        xattrs={b"etc/new": {b"security.capability": b"\x01\x00\x00\x02"}},
        implied_dirs={b"", b"etc"},
    )
    sidecar.save(scratch / "meta.json")
    index = PathIndex([Layer(str(lower)), Layer(str(upper),
                                                sidecar=str(scratch / "meta.json"))])
    null = index.resolve("dev/null")
    assert stat.S_ISCHR(null.mode) and null.rdev == os.makedev(1, 3)
    assert index.resolve(b"x" * 255) is None
    assert index.resolve("etc").mode & 0o777 == 0o750  # implied in the upper: from below
    assert index.get_xattr(index.resolve("etc"), b"user.from") == b"lower"
    new = index.resolve("etc/new")
    assert (new.uid, new.gid) == (0, 0)
    assert index.get_xattr(new, b"security.capability") == b"\x01\x00\x00\x02"
    assert b"security.capability" in index.list_xattrs(new)


# -- directories are read when first needed ------------------------------------------------

LAZY_STACK = [
    {b"a/deep/x": File(b"x"), b"b/link1": File(b"shared"), b"b/link2": Hardlink(b"b/link1"),
     b"c/old": File(b"o"), b"top/peer": Hardlink(b"b/link1")},
    {b"a/deep/y": File(b"y"), b"c": Dir(opaque=True), b"c/new": File(b"n"),
     b"a/deep/x": Whiteout()},
]


def _tree(index: PathIndex) -> dict[bytes, tuple]:
    return {path: (node.ino, node.mode, node.size, node.nlink, node.shown_nlink, node.layer,
                   node.layers if node.is_dir else None, len(index.aliases(node)))
            for path, node in index.walk()}


def test_a_new_index_reads_only_the_root_until_asked(scratch):
    index = index_of(materialize_stack(LAZY_STACK, scratch, "oci"))
    assert len(index) == 1 + 4  # the root and its children: a, b, c, top
    assert index.resolve("a").loader == index.loader.load  # listed, not read
    assert index.resolve("a/deep/y") is not None
    assert index.resolve("a").loader is None and index.resolve("b").loader == index.loader.load
    assert sorted(index.resolve("c").children) == [b"new"]  # opaque, known once read


def test_reading_order_does_not_change_the_tree_or_its_inode_numbers(scratch):
    dirs = materialize_stack(LAZY_STACK, scratch, "oci")
    in_order = index_of(dirs)
    in_order.load_all()
    reversed_order = index_of(dirs)
    for path in ("top", "c", "b", "a/deep"):  # the other hard link's dir first
        reversed_order.load(reversed_order.resolve(path))
    assert _tree(reversed_order) == _tree(in_order)
    peer = reversed_order.resolve("top/peer")
    assert peer.ino == reversed_order.resolve("b/link1").ino
    assert len(reversed_order.aliases(peer)) == 3


def test_aliases_of_a_hard_linked_file_are_complete_before_the_rest_is_read(scratch):
    index = index_of(materialize_stack(LAZY_STACK, scratch, "oci"))
    peer = index.resolve("top/peer")
    assert {node.path() for node in index.aliases(peer)} == {b"top/peer", b"b/link1", b"b/link2"}


def test_load_pending_reads_a_little_at_a_time_and_says_when_done(scratch):
    index = index_of(materialize_stack(LAZY_STACK, scratch, "oci"))
    rounds = 0
    while index.load_pending(budget=0.0):  # one directory per call
        rounds += 1
    assert rounds >= 3
    assert all(node.loader is None for _, node in index.walk())
    assert not index.load_pending()


def test_a_directory_that_cannot_be_read_stays_unread_and_is_tried_again(scratch):
    from layerfs.errors import LayerError
    dirs = materialize_stack(LAZY_STACK, scratch, "oci")
    index = index_of(dirs)
    moved = dirs[0].parent / "moved-away"
    (dirs[0] / "b").rename(moved)
    try:
        node = index.resolve("b")
        with pytest.raises(LayerError, match="b"):
            index.load(node)
        assert node.loader == index.loader.load
        assert not index.load_pending(budget=3600.0)  # logged and left for the request that needs it
    finally:
        moved.rename(dirs[0] / "b")
    assert sorted(node.children) == [b"link1", b"link2"]


def test_a_failed_read_takes_no_inode_numbers(scratch):
    """Reading a directory fails at its last entry (a metadata-only copy whose data
    is nowhere); once mended, its entries get the numbers a fresh index gives."""
    from layerfs.errors import LayerError
    lower, upper = scratch / "lower", scratch / "upper"
    (lower / "d").mkdir(parents=True)
    (lower / "d" / "a").write_bytes(b"a")
    (upper / "d").mkdir(parents=True)
    for name in ("a", "b", "z"):
        (upper / "d" / name).write_bytes(b"")
        os.truncate(upper / "d" / name, 1)
    os.setxattr(upper / "d" / "z", b"user.overlay.metacopy", b"")  # its data: nowhere
    layers = [Layer(str(lower)), Layer(str(upper), upper=True)]
    index = PathIndex(layers)
    directory = index.resolve("d")
    with pytest.raises(LayerError, match="metacopy"):
        index.load(directory)
    os.removexattr(upper / "d" / "z", b"user.overlay.metacopy")
    index.load(directory)
    fresh = PathIndex(layers)
    assert {name: node.ino for name, node in directory.children.items()} == \
        {name: node.ino for name, node in fresh.resolve("d").children.items()}
