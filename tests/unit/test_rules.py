"""Pure rules: whiteout names, opaque and private xattrs, mount options, override_stat, inodes."""

from __future__ import annotations

import os
import stat

import pytest

from layerfs.errors import UsageError
from layerfs.inodes import ROOT_INODE, InodeNumbers
from layerfs.metadata import parse_override_stat
from layerfs.options import parse_options, split_escaped
from layerfs.whiteouts import (
    MarkerName,
    backing_xattr_name,
    classify_marker,
    is_whiteout_device,
    opaque_state,
    visible_xattr_name,
)


@pytest.mark.parametrize("name, expected", [
    (b"file", None),
    (b".whatever", None),
    (b".wh.foo", (MarkerName.WHITEOUT, b"foo")),
    (b".wh..wh..opq", (MarkerName.OPAQUE, b"")),
    (b".wh..wh.plnk", (MarkerName.AUFS_META, b"")),
    (b".wh.", (MarkerName.AUFS_META, b"")),
    (b".wh.\xff\xfe", (MarkerName.WHITEOUT, b"\xff\xfe")),
])
def test_marker_names(name, expected):
    assert classify_marker(name) == expected


def test_whiteout_device_is_char_zero_zero_only():
    assert is_whiteout_device(stat.S_IFCHR | 0o000, 0)
    assert not is_whiteout_device(stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert not is_whiteout_device(stat.S_IFBLK, 0)
    assert not is_whiteout_device(stat.S_IFREG, 0)


@pytest.mark.parametrize("xattrs, expected", [
    ({}, (False, False)),
    ({b"trusted.overlay.opaque": b"y"}, (True, False)),
    ({b"user.overlay.opaque": b"y"}, (True, False)),
    ({b"user.fuseoverlayfs.opaque": b"y"}, (True, False)),
    ({b"trusted.overlay.opaque": b"x"}, (False, True)),
    ({b"trusted.overlay.opaque": b"n"}, (False, False)),
    ({b"user.fuseoverlayfs.opaque": b"x"}, (False, False)),
])
def test_opaque_state(xattrs, expected):
    assert opaque_state(xattrs) == expected


@pytest.mark.parametrize("backing, shown", [
    (b"user.comment", b"user.comment"),
    (b"security.capability", b"security.capability"),
    (b"trusted.overlay.opaque", None),
    (b"user.overlay.origin", None),
    (b"user.fuseoverlayfs.opaque", None),
    (b"user.containers.override_stat", None),
    (b"trusted.overlay.overlay.opaque", b"trusted.overlay.opaque"),
])
def test_xattr_visibility_and_its_inverse(backing, shown):
    assert visible_xattr_name(backing) == shown
    if shown is not None:
        assert backing_xattr_name(shown) == backing


def test_lowerdir_is_top_first_with_escapes():
    options = parse_options([r"ro,lowerdir=/top:/mid\:dle:/bottom,allow_other", "nodev"])
    assert options.lowerdirs == ["/bottom", "/mid:dle", "/top"]
    assert options.fuse == {"allow_other"}


def test_overlay_only_options_are_accepted():
    options = parse_options(["lowerdir=/a:/b,redirect_dir=on,index=off,xino=auto,metacopy=off"])
    assert options.lowerdirs == ["/b", "/a"]


@pytest.mark.parametrize("bad", ["lowerdir=/a::/b", "frobnicate", "allow_other=1"])
def test_bad_options_name_the_option(bad):
    with pytest.raises(UsageError, match="-o"):
        parse_options([bad])


def test_split_escaped_keeps_escapes_for_a_second_split():
    assert split_escaped(r"a\,b,c", ",") == ["a,b", "c"]
    assert split_escaped(r"a\:b,c", ",", unescape=False) == [r"a\:b", "c"]


def test_override_stat_forms():
    plain = parse_override_stat(b"0:0:4755")
    assert plain is not None and (plain.uid, plain.gid) == (0, 0)
    assert plain.apply(stat.S_IFREG | 0o600, 0) == (stat.S_IFREG | 0o4755, 0)
    device = parse_override_stat(b"1000:100:0620:char-4-1")
    assert device is not None
    assert device.apply(stat.S_IFREG | 0o600, 0) == (stat.S_IFCHR | 0o620, os.makedev(4, 1))
    folder = parse_override_stat(b"5:6:0700:dir")
    assert folder is not None and folder.apply(stat.S_IFDIR | 0o755, 0)[0] == stat.S_IFDIR | 0o700
    for bad in (b"", b"x:0:0", b"0:0", b"0:0:0:char-x", b"0:0:999:file", b"0:0:644:weird"):
        assert parse_override_stat(bad) is None


def test_inode_numbers_are_stable_and_unique():
    first, second = InodeNumbers(), InodeNumbers()
    paths = [f"dir/{n}".encode() for n in range(2000)]
    numbers = [first.assign(p) for p in paths]
    assert numbers == [second.assign(p) for p in paths]
    assert len(set(numbers)) == len(numbers)
    assert ROOT_INODE not in numbers and 0 not in numbers
    # The same path again (a collision) gets a different number.
    assert first.assign(b"dir/1") not in numbers
