"""One layer's view alone (no merge, no FUSE): its listing with whiteouts, the stat
corrected by its sidecar and override_stat, xattrs, symlinks and its real dirs."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from layerfs.errors import LayerError
from layerfs.layer import Layer
from layerfs.layerview import LayerView
from layerfs.sidecar import Sidecar
from layerfs.whiteouts import OVERRIDE_STAT_XATTR


def make_layer(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root")
    (root / "etc" / ".wh.gone").write_text("")
    (root / "usr").mkdir()
    (root / "usr" / "bin").mkdir()
    (root / "link").symlink_to("usr")
    os.setxattr(root / "etc" / "passwd", b"user.note", b"kept")
    os.setxattr(root / "etc" / "passwd", b"user.overlay.origin", b"private")
    return root


def test_listing_has_the_names_and_the_whiteouts_of_markers_and_sidecar(scratch):
    root = make_layer(scratch / "layer")
    Sidecar(whiteouts={b"etc": {b"hidden"}}).save(scratch / "meta.json")
    view = LayerView(Layer(str(root), sidecar=str(scratch / "meta.json")))
    listing = view.listing(b"etc").listing
    assert set(listing.entries) == {b"passwd"}
    assert set(listing.whiteouts) == {b"gone", b"hidden"}
    assert set(view.listing(b"").listing.entries) == {b"etc", b"usr", b"link"}
    assert set(LayerView(Layer(str(root))).listing(b"etc").listing.whiteouts) == {b"gone"}


def test_stat_applies_the_sidecar(scratch):
    root = make_layer(scratch / "layer")
    Sidecar(owner=(7, 8), stats={b"etc/passwd": (0, 0, stat.S_IFCHR | 0o600, os.makedev(1, 3))},
            implied_dirs={b"usr"}).save(scratch / "meta.json")
    view = LayerView(Layer(str(root), sidecar=str(scratch / "meta.json")))
    device = view.stat(b"etc/passwd")
    assert stat.S_ISCHR(device.st_mode) and device.st_rdev == os.makedev(1, 3)
    assert (device.st_uid, device.st_gid) == (0, 0)
    assert (view.stat(b"usr").st_uid, view.root_stat().st_gid) == (7, 8)
    assert view.is_implied(b"usr") and not view.is_implied(b"etc")
    with pytest.raises(LayerError, match="missing"):
        view.stat(b"missing")


def test_stat_applies_override_stat_when_the_root_has_it(scratch):
    root = make_layer(scratch / "layer")
    os.setxattr(root, OVERRIDE_STAT_XATTR, b"0:0:0755")
    os.setxattr(root / "etc" / "passwd", OVERRIDE_STAT_XATTR, b"12:34:0600:file")
    view = LayerView(Layer(str(root)))
    st = view.stat(b"etc/passwd")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12, 34, 0o600)
    assert OVERRIDE_STAT_XATTR not in view.list_xattrs(b"etc/passwd")


def test_xattrs_hide_overlay_private_ones_and_add_recorded_ones(scratch):
    root = make_layer(scratch / "layer")
    Sidecar(xattrs={b"etc/passwd": {b"security.capability": b"cap"}}).save(scratch / "meta.json")
    view = LayerView(Layer(str(root), sidecar=str(scratch / "meta.json")))
    assert sorted(view.list_xattrs(b"etc/passwd")) == [b"security.capability", b"user.note"]
    assert view.get_xattr(b"etc/passwd", b"user.note") == b"kept"
    assert view.get_xattr(b"etc/passwd", b"security.capability") == b"cap"
    for name in (b"user.overlay.origin", b"user.absent"):
        with pytest.raises(OSError) as raised:
            view.get_xattr(b"etc/passwd", name)
        assert raised.value.errno == errno.ENODATA
    assert view.overlay_xattrs(b"etc/passwd", frozenset({b"user.overlay.origin"})) == \
        {b"user.overlay.origin": b"private"}
    assert view.read_link(b"link") == b"usr"


def test_has_dir_never_follows_a_symlink(scratch):
    view = LayerView(Layer(str(make_layer(scratch / "layer"))))
    assert view.has_dir(b"") and view.has_dir(b"usr/bin")
    assert not view.has_dir(b"link") and not view.has_dir(b"link/bin")
    assert not view.has_dir(b"etc/passwd") and not view.has_dir(b"nothing")


def test_a_layer_that_is_no_directory_or_an_unreadable_sidecar_is_a_clear_error(scratch):
    (scratch / "file").write_text("x")
    with pytest.raises(LayerError, match="is not a directory"):
        LayerView(Layer(str(scratch / "file"), label="top")).root_stat()
    root = make_layer(scratch / "layer")
    (scratch / "meta.json").write_text("{not json")
    with pytest.raises(LayerError, match="meta.json: unreadable metadata of layer top"):
        LayerView(Layer(str(root), label="top", sidecar=str(scratch / "meta.json")))
