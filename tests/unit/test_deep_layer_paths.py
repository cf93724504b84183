"""Layer entries deeper than PATH_MAX below the layer root, read by the index (no FUSE):
checking a layer's directories, following a redirect to a deep lower dir and reading
override_stat all reach them through :meth:`Layer.at`, never through a path the kernel
refuses (ENAMETOOLONG)."""

from __future__ import annotations

import os
from pathlib import Path

from layerfs.index import PathIndex
from layerfs.layer import Layer
from layerfs.longpath import PATH_MAX
from layerfs.redirects import DIR, WHITEOUT
from layerfs.scan import probe_path
from layerfs.whiteouts import OPAQUE_MARKER, OVERRIDE_STAT_XATTR, WHITEOUT_PREFIX

PART = b"d" * 200
DEPTH = 24  # 24 * 201 bytes: past PATH_MAX below the layer root
DEEP = b"/".join([PART] * DEPTH)


def make_deep(root: Path) -> int:
    """``root/DEEP`` made component by component; a descriptor of its deepest dir."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):
        os.mkdir(PART, 0o755, dir_fd=fd)
        nxt = os.open(PART, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    return fd


def test_the_paths_are_past_path_max(scratch):
    assert len(os.fsencode(scratch)) + 1 + len(DEEP) > PATH_MAX


def test_layer_has_dir_sees_deep_dirs_and_never_follows_a_symlink(scratch):
    fd = make_deep(scratch / "l0")
    try:
        os.symlink(b"../" + PART, b"link", dir_fd=fd)
        os.mkdir(b"real", dir_fd=fd)
    finally:
        os.close(fd)
    index = PathIndex([Layer(str(scratch / "l0"))])
    assert index.views[0].has_dir(DEEP)
    assert index.views[0].has_dir(DEEP + b"/real")
    assert not index.views[0].has_dir(DEEP + b"/link")
    assert not index.views[0].has_dir(DEEP + b"/link/real")
    assert not index.views[0].has_dir(DEEP + b"/missing")


def test_probe_path_walks_deep_dirs_and_sees_their_markers(scratch):
    fd = make_deep(scratch / "l0")
    try:
        os.mkdir(b"opaque", dir_fd=fd)
        os.close(os.open(OPAQUE_MARKER, os.O_CREAT | os.O_WRONLY, 0o644,
                         dir_fd=os.open(b"opaque", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)))
        os.close(os.open(WHITEOUT_PREFIX + b"gone", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    layer = Layer(str(scratch / "l0"))
    deep = probe_path(layer, DEEP)
    assert deep.kind == DIR and not deep.opaque
    opaque = probe_path(layer, DEEP + b"/opaque")
    assert opaque.kind == DIR and opaque.opaque
    assert probe_path(layer, DEEP + b"/gone").kind == WHITEOUT


def test_a_redirect_to_a_deep_lower_dir_is_followed(scratch):
    # A relative redirect (an xattr value holds at most a block): layer 1's deep dir
    # "moved" was renamed from PART, which layer 0 holds at DEEP.
    fd = make_deep(scratch / "l0")
    try:
        os.close(os.open(b"inside", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    fd = make_deep(scratch / "l1")
    try:
        os.rename(b"../" + PART, b"../moved", src_dir_fd=fd, dst_dir_fd=fd)
        os.close(os.open(b"added", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        os.setxattr(fd, b"user.overlay.redirect", PART)
    finally:
        os.close(fd)
    index = PathIndex([Layer(str(scratch / "l0")), Layer(str(scratch / "l1"))])
    node = index.resolve(DEEP.rpartition(b"/")[0] + b"/moved")
    assert node is not None and node.layers == (1, 0)
    assert sorted(node.children) == [b"added", b"inside"]


def test_override_stat_of_a_deep_entry_is_applied(scratch):
    root = scratch / "l0"
    fd = make_deep(root)
    try:
        file = os.open(b"file", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd)
        try:
            os.setxattr(file, OVERRIDE_STAT_XATTR, b"1000:1001:0640")
        finally:
            os.close(file)
    finally:
        os.close(fd)
    os.setxattr(root, OVERRIDE_STAT_XATTR, b"0:0:0755")  # the layer uses override_stat
    index = PathIndex([Layer(str(root))])
    st = index.views[0].stat(DEEP + b"/file")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o640)
    node = index.resolve(DEEP + b"/file")
    assert node is not None and (node.uid, node.gid, node.mode & 0o7777) == (1000, 1001, 0o640)


def test_the_data_of_a_deep_metacopy_file_is_found_below(scratch):
    fd = make_deep(scratch / "lower")
    try:
        data = os.open(b"file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(data, b"the data")
        os.close(data)
    finally:
        os.close(fd)
    fd = make_deep(scratch / "upper")
    try:
        copy = os.open(b"file", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd)
        try:
            os.truncate(copy, 8)
            os.setxattr(copy, b"user.overlay.metacopy", b"")
        finally:
            os.close(copy)
    finally:
        os.close(fd)
    index = PathIndex([Layer(str(scratch / "lower")), Layer(str(scratch / "upper"), upper=True)])
    node = index.resolve(DEEP + b"/file")
    assert node is not None and node.layer == 1 and node.mode & 0o777 == 0o600
    assert index.data_backing(node) == (0, DEEP + b"/file")
