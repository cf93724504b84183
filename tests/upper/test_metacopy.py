"""Kernel uppers written with metacopy=on: metadata-only copies, their data left below.

The kernel, asked for metacopy=on, copies up only the metadata of a file whose
metadata changes (chmod, chown, rename...), marking it with the
``overlay.metacopy`` xattr and, where it moved, an ``overlay.redirect`` to
where the data is. layerfs must show such an upper exactly as the kernel does
(data, size, blocks) and, writing to one of those files, copy its data up first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from layerfs import treediff
from tests.support.layerspec import File
from tests.support.overlaypair import MERGED_PROPERTIES, OverlayPair, reset_work

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay")

DATA = bytes(range(256)) * 64  # 16 KiB, several blocks


def stack() -> list[dict]:
    return [
        {b"f": File(DATA), b"g": File(b"g data"), b"d/h": File(b"h data"),
         b"d/i": File(b"i data"), b"moved": File(b"moved data"), b"big": File(DATA * 64)},
        {b"top": File(b"top")},
    ]


def metadata_changes(root: Path) -> None:
    os.chmod(root / "f", 0o600)
    os.chown(root / "g", 5, 5)
    os.rename(root / "g", root / "g2")                 # a relative redirect
    os.rename(root / "d", root / "d2")                 # the dir redirected...
    os.chmod(root / "d2/h", 0o700)                     # ...its file found through it
    os.mkdir(root / "elsewhere")
    os.chmod(root / "moved", 0o640)
    os.rename(root / "moved", root / "elsewhere/moved")  # an absolute redirect
    os.chmod(root / "big", 0o600)


def metacopy_upper(scratch: Path) -> tuple[OverlayPair, dict]:
    """The kernel's upper after ``metadata_changes`` with metacopy=on, and its view."""
    pair = OverlayPair(scratch, stack(), kernel_options=["metacopy=on"])
    with pair.kernel_mounted() as mnt:
        metadata_changes(mnt)
        view = treediff.snapshot(mnt)
    upper = pair.kernel.upper
    marked = [path for path in ("f", "g2", "d2/h", "elsewhere/moved", "big")
              if b"trusted.overlay.metacopy" in [os.fsencode(n) for n in os.listxattr(
                  upper / path, follow_symlinks=False)]]
    assert marked == ["f", "g2", "d2/h", "elsewhere/moved", "big"], \
        f"the kernel made metadata-only copies of {marked} only"
    return pair, view


def test_layerfs_shows_a_metacopy_upper_as_the_kernel_does(scratch, needs_root):
    pair, kernel_view = metacopy_upper(scratch)
    reset_work(pair.kernel)
    with pair.layerfs_mounted(pair.kernel) as mnt:
        seen = treediff.snapshot(mnt)
        blocks = {path: os.lstat(mnt / path).st_blocks for path in ("f", "big")}
    differences = treediff.diff(kernel_view, seen, (*MERGED_PROPERTIES, "mtime_ns"))
    assert not differences, "\n".join(map(str, differences))
    lower = pair.kernel.lowers[0]
    assert blocks == {path: os.lstat(lower / path).st_blocks for path in ("f", "big")}


def test_writing_a_metacopy_file_copies_its_data_up_first(scratch, needs_root):
    pair, _ = metacopy_upper(scratch)
    reset_work(pair.kernel)
    with pair.layerfs_mounted(pair.kernel) as mnt:
        with open(mnt / "f", "r+b") as f:  # opened for writing: data copied up
            f.seek(10)
            f.write(b"XY")
        os.rename(mnt / "g2", mnt / "elsewhere/g3")  # moved again: made whole first
        os.truncate(mnt / "big", 100)
        with open(mnt / "d2/h", "ab") as f:
            f.write(b"+")
        written = treediff.snapshot(mnt)
    upper = pair.kernel.upper
    for path in ("f", "elsewhere/g3", "big", "d2/h"):
        names = [os.fsencode(n) for n in os.listxattr(upper / path, follow_symlinks=False)]
        assert b"trusted.overlay.metacopy" not in names, path
        assert b"trusted.overlay.redirect" not in names, path
    assert written[b"f"].content == xxhash.xxh3_128(DATA[:10] + b"XY" + DATA[12:]).hexdigest()
    assert written[b"big"].size == 100
    # The kernel, mounting the result, sees what layerfs showed.
    reset_work(pair.kernel)
    with pair.kernel_mounted() as mnt:
        again = treediff.snapshot(mnt)
    differences = treediff.diff(written, again, (*MERGED_PROPERTIES, "mtime_ns"))
    assert not differences, "\n".join(map(str, differences))
    assert (Path(pair.kernel.lowers[0]) / "f").read_bytes() == DATA  # lowers untouched
