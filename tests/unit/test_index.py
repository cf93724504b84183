"""PathIndex over real layer directories (no FUSE): the merged tree, hard links, inodes."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

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
    from layerfs.sidecar import SIDECAR_KEY, Sidecar

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
                                                extra={SIDECAR_KEY: str(scratch / "meta.json")})])
    null = index.resolve("dev/null")
    assert stat.S_ISCHR(null.mode) and null.rdev == os.makedev(1, 3)
    assert index.resolve(b"x" * 255) is None
    assert index.resolve("etc").mode & 0o777 == 0o750  # implied in the upper: from below
    assert index.get_xattr(index.resolve("etc"), b"user.from") == b"lower"
    new = index.resolve("etc/new")
    assert (new.uid, new.gid) == (0, 0)
    assert index.get_xattr(new, b"security.capability") == b"\x01\x00\x00\x02"
    assert b"security.capability" in index.list_xattrs(new)
