"""What ``-o xattrs=auto`` decides on, without FUSE: the unpack's ``has_xattrs`` record,
the walk of layers read in place, and the option's spelling."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import trio

from layerfs.errors import UsageError
from layerfs.layer import Layer
from layerfs.layerview import LayerView
from layerfs.options import parse_options
from layerfs.unpack import LayerBlob, LayerCache
from layerfs.unpack.digests import sha256_digest
from layerfs.xattrcheck import image_shows_xattrs, layers_to_walk, recorded
from layerfs.xattrwalk import walk_shows_xattrs
from tests.images.tarbuild import d, f, layer_tar

CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


def _cached_view(tmp_path: Path, entries: list, *, privileged: bool = False) -> LayerView:
    tar = layer_tar(entries)
    blob = LayerBlob(label="L", open=lambda: io.BytesIO(tar), diff_id=sha256_digest(tar))
    cached = LayerCache(tmp_path / "cache", privileged=privileged).ensure(blob, None)
    return LayerView(Layer(str(cached.root), sidecar=str(cached.sidecar_path)))


def _dir_view(root: Path) -> LayerView:
    return LayerView(Layer(str(root)))


def _tree(root: Path) -> Path:
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/file").write_text("x")
    os.symlink("/nowhere", root / "a/link")
    return root


def _settable(path: Path, name: str) -> bool:
    try:
        os.setxattr(path, name, b"y")
        return True
    except OSError:
        return False


def test_the_unpack_records_whether_entries_carry_xattrs(tmp_path: Path) -> None:
    plain = _cached_view(tmp_path / "plain", [d("etc"), f("etc/hosts", b"h")])
    user = _cached_view(tmp_path / "user", [f("x", b"", xattrs={"user.k": b"v"})])
    # Not storable by a user: kept in the sidecar, shown all the same.
    caps = _cached_view(tmp_path / "caps", [f("ping", b"", xattrs={
        "security.capability": CAPABILITY})])
    # The overlay's own never show (and are not stored).
    overlay = _cached_view(tmp_path / "overlay", [d("o", xattrs={
        "trusted.overlay.opaque": b"y"})])
    assert [view.sidecar.info["has_xattrs"] for view in (plain, user, caps, overlay)] == \
        [False, True, True, False]
    assert [recorded(view) for view in (plain, user, caps, overlay)] == [False, True, True, False]
    assert layers_to_walk([plain, user]) == []


def test_a_cache_entry_without_the_record_is_walked(tmp_path: Path) -> None:
    view = _cached_view(tmp_path, [f("x", b"x")])
    meta = Path(view.layer.sidecar)
    data = json.loads(meta.read_text())
    del data["info"]["has_xattrs"]
    meta.write_text(json.dumps(data))
    old = LayerView(view.layer)
    assert recorded(old) is None
    assert layers_to_walk([old]) == [old.layer.root]
    assert trio.run(image_shows_xattrs, [old]) is False


def test_the_walk_sees_every_entry_and_not_overlay_xattrs(tmp_path: Path) -> None:
    root = _tree(tmp_path / "layer")
    assert walk_shows_xattrs(os.fsencode(root)) is False
    for name in ("trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"):
        _settable(root / "a", name)  # trusted.* only as root
    assert walk_shows_xattrs(os.fsencode(root)) is False
    if not _settable(root / "a/b/file", "user.deep"):
        pytest.skip("no user xattrs on this filesystem")
    assert walk_shows_xattrs(os.fsencode(root)) is True


def test_an_unreadable_directory_counts_as_holding_xattrs(tmp_path: Path) -> None:
    root = _tree(tmp_path / "layer")
    os.chmod(root / "a/b", 0)
    try:
        if os.access(root / "a/b", os.R_OK):
            pytest.skip("root reads any directory")
        assert walk_shows_xattrs(os.fsencode(root)) is True
    finally:
        os.chmod(root / "a/b", 0o755)


def test_the_image_holds_xattrs_if_any_layer_does(tmp_path: Path) -> None:
    cached = _cached_view(tmp_path / "c", [f("x", b"x")])
    in_place = _dir_view(_tree(tmp_path / "dir"))
    assert layers_to_walk([cached, in_place]) == [in_place.layer.root]
    assert trio.run(image_shows_xattrs, [cached, in_place]) is False
    if not _settable(tmp_path / "dir/a", "user.k"):
        pytest.skip("no user xattrs on this filesystem")
    assert trio.run(image_shows_xattrs, [cached, in_place]) is True
    recorded_with = _cached_view(tmp_path / "r", [f("x", b"", xattrs={"user.k": b"v"})])
    assert trio.run(image_shows_xattrs, [recorded_with, in_place]) is True


def test_the_option_spellings() -> None:
    assert parse_options([]).xattrs == "auto"
    assert [parse_options([f"xattrs={value}"]).xattrs for value in ("auto", "on", "off")] == \
        ["auto", "on", "off"]
    assert parse_options(["noxattrs"]).xattrs == parse_options(["noxattrs=1"]).xattrs == "off"
    with pytest.raises(UsageError, match="xattrs=maybe: expected one of auto, on, off"):
        parse_options(["xattrs=maybe"])
