"""The kernel's inode index format (layerfs.hardlinkindex) and the index= option."""

from __future__ import annotations

import sys

import pytest

from layerfs.errors import UsageError
from layerfs.hardlinkindex import nlink_value, origin_handle, parse_nlink
from layerfs.mountplan import plan_mount
from layerfs.options import parse_options


def test_origin_handle_is_the_kernels_ovl_fb():
    # What the kernel wrote for an ext4 file (inode 15427540, generation
    # 0x8a562490) on a filesystem with a null uuid, in trusted.overlay.origin.
    fid = bytes.fromhex("d467eb009024568a")
    encoded = origin_handle(1, fid, bytes(16))
    flags = "01" if sys.byteorder == "big" else "00"
    assert encoded.hex() == f"00fb1d{flags}01" + "00" * 16 + "d467eb009024568a"


def test_origin_handle_carries_the_uuid_and_length():
    uuid = bytes(range(16))
    encoded = origin_handle(0x81, b"\x01" * 12, uuid)
    assert encoded[2] == 5 + 16 + 12
    assert encoded[4] == 0x81
    assert encoded[5:21] == uuid


def test_a_handle_too_big_for_an_origin_is_refused():
    with pytest.raises(ValueError):
        origin_handle(1, b"\0" * 250, bytes(16))


@pytest.mark.parametrize("extra, text", [(1, b"U+1"), (0, b"U+0"), (-1, b"U-1")])
def test_nlink_values(extra, text):
    assert nlink_value(extra) == text
    assert parse_nlink(text, 2, None) == 2 + extra


def test_nlink_relative_to_the_lower_and_unusable_values():
    assert parse_nlink(b"L-1", 5, 3) == 2
    assert parse_nlink(b"L-1", 5, None) is None
    assert parse_nlink(b"X+1", 5, 3) is None
    assert parse_nlink(b"U", 5, 3) is None
    assert parse_nlink(b"Uxy", 5, 3) is None


def test_index_option():
    assert parse_options(["index=on"]).index is True
    assert parse_options(["index=off"]).index is False
    assert parse_options(["ro"]).index is None
    with pytest.raises(UsageError, match="index=maybe"):
        parse_options(["index=maybe"])


def test_index_is_refused_with_userxattr(tmp_path):
    with pytest.raises(UsageError, match="userxattr"):
        plan_mount(None, parse_options(["index=on,userxattr"]), layers=[str(tmp_path)],
                   upper=str(tmp_path / "u"))
