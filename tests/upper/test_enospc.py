"""An upper dir on a full filesystem: ENOSPC reaches the writer, no partial
copy-up shows (in the mount, the upper dir or the work dir), reads go on, and
once space is freed writes work again -- as on the kernel overlay, which runs
the same steps on a filesystem of the same size.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.mounting import force_unmount, layerfs_mounted

pytestmark = pytest.mark.usefixtures("needs_root")

SPACE = 4 << 20
BIG = 6 << 20  # more than the whole upper filesystem
MEDIUM = 3 << 20  # fits an empty upper, not a full one
CHUNK = 256 << 10


@contextlib.contextmanager
def small_tmpfs(path: Path, size: int, inodes: int | None = None) -> Iterator[Path]:
    path.mkdir()
    limit = f",nr_inodes={inodes}" if inodes else ""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755{limit}",
                    "layerfs-test", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        force_unmount(path)


def make_lower(root: Path) -> dict[str, bytes]:
    rng = random.Random(5)
    files = {"big": rng.randbytes(BIG), "medium": rng.randbytes(MEDIUM),
             "small": b"small lower file\n", "dir/inner": b"inner\n"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def fill(path: Path) -> tuple[int, str]:
    """Write a new file until the space runs out: (bytes acknowledged, how it ended)."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        while written < 4 * SPACE:
            written += os.write(fd, b"f" * CHUNK)
        return written, "no error"
    except OSError as exc:
        return written, errno.errorcode[exc.errno or 0]
    finally:
        os.close(fd)


def attempt(action) -> str:
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]


def open_for_append(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def leftovers(upper: Path, work: Path) -> list[str]:
    """What a failed copy-up could have left: lower names in the upper dir, anything
    in the work dir's work/."""
    found = [str(p.relative_to(upper)) for p in upper.rglob("*")
             if p.name in ("big", "medium")]
    found += [f"work/{name}" for name in os.listdir(work / "work")]
    return found


def scenario(mnt: Path, upper: Path, work: Path, lower: dict[str, bytes]) -> list:
    """The steps, each checked where it is; returns the outcomes to compare."""
    seen: list = []
    written, how = fill(mnt / "filler")
    seen.append(("fill", how))
    assert 0 < written <= SPACE
    # What was acknowledged is there.
    assert os.stat(mnt / "filler").st_size == written
    assert (mnt / "filler").read_bytes() == b"f" * written

    # Full: copy-ups fail, and leave nothing half-made.
    seen.append(("copy-up small when full", attempt(lambda: open_for_append(mnt / "medium"))))
    seen.append(("copy-up big when full", attempt(lambda: open_for_append(mnt / "big"))))
    assert (mnt / "medium").read_bytes() == lower["medium"]
    assert (mnt / "big").read_bytes() == lower["big"]
    assert leftovers(upper, work) == []

    # Reads go on.
    for name, data in lower.items():
        assert (mnt / name).read_bytes() == data, name
    assert sorted(os.listdir(mnt)) == ["big", "dir", "filler", "medium", "small"]

    # Space freed: what fits is copied up and written; what cannot still fails cleanly.
    os.unlink(mnt / "filler")
    seen.append(("copy-up bigger than the filesystem",
                 attempt(lambda: append(mnt / "big", b"tail"))))
    assert (mnt / "big").read_bytes() == lower["big"]
    assert leftovers(upper, work) == []
    seen.append(("copy-up medium", attempt(lambda: append(mnt / "medium", b"tail"))))
    seen.append(("append small", attempt(lambda: append(mnt / "small", b"more\n"))))
    seen.append(("new file", attempt(lambda: (mnt / "dir" / "new").write_bytes(b"n" * CHUNK))))
    assert (mnt / "medium").read_bytes() == lower["medium"] + b"tail"
    assert (mnt / "small").read_bytes() == lower["small"] + b"more\n"
    assert (mnt / "dir" / "new").read_bytes() == b"n" * CHUNK
    assert (mnt / "big").read_bytes() == lower["big"]
    return seen


def inode_scenario(mnt: Path, upper: Path, work: Path, lower: dict[str, bytes]) -> list:
    """Out of inodes (not bytes): new names, whiteouts and copy-ups all need one."""
    seen: list = []
    made = 0
    while True:
        how = attempt((mnt / f"n{made}").touch)
        if how != "ok":
            break
        made += 1
        assert made < 1000
    seen.append(("create until full", how))
    assert not (mnt / f"n{made}").exists()
    seen.append(("mkdir", attempt(lambda: os.mkdir(mnt / "newdir"))))
    seen.append(("symlink", attempt(lambda: os.symlink("small", mnt / "newlink"))))
    seen.append(("whiteout", attempt(lambda: os.unlink(mnt / "small"))))
    seen.append(("copy-up", attempt(lambda: append(mnt / "dir" / "inner", b"x"))))
    assert (mnt / "small").read_bytes() == lower["small"]
    assert (mnt / "dir" / "inner").read_bytes() == lower["dir/inner"]
    assert sorted(os.listdir(mnt / "dir")) == ["inner"]
    assert [p for p in leftovers(upper, work) if p.startswith("work/")] == []
    # An upper file removed frees its inode: the copy-up then works.
    os.unlink(mnt / "n0")
    os.unlink(mnt / "n1")
    seen.append(("copy-up after freeing", attempt(lambda: append(mnt / "dir" / "inner", b"x"))))
    assert (mnt / "dir" / "inner").read_bytes() == lower["dir/inner"] + b"x"
    return seen


def run_side(base: Path, mount, *, inodes: int | None = None) -> list:
    lower_dir = base / "lower"
    lower_dir.mkdir(parents=True)
    lower = make_lower(lower_dir)
    with small_tmpfs(base / "space", SPACE, inodes) as space:
        upper, work, mnt = space / "upper", space / "work", base / "mnt"
        for path in (upper, work, mnt):
            path.mkdir()
        with mount(lower_dir, upper, work, mnt):
            if inodes:
                return inode_scenario(mnt, upper, work, lower)
            seen = scenario(mnt, upper, work, lower)
        assert (upper / "medium").read_bytes() == lower["medium"] + b"tail"
        assert not (upper / "big").exists()
        assert not (upper / "filler").exists()
        return seen


def options(lower: Path, upper: Path, work: Path) -> str:
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


@contextlib.contextmanager
def layerfs_side(lower: Path, upper: Path, work: Path, mnt: Path) -> Iterator[None]:
    with layerfs_mounted(mnt, "-o", options(lower, upper, work)):
        yield


@contextlib.contextmanager
def kernel_side(lower: Path, upper: Path, work: Path, mnt: Path) -> Iterator[None]:
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options(lower, upper, work),
                    str(mnt)], check=True, capture_output=True)
    try:
        yield
    finally:
        force_unmount(mnt)


EXPECTED = [
    ("fill", "ENOSPC"),
    ("copy-up small when full", "ENOSPC"),
    ("copy-up big when full", "ENOSPC"),
    ("copy-up bigger than the filesystem", "ENOSPC"),
    ("copy-up medium", "ok"),
    ("append small", "ok"),
    ("new file", "ok"),
]


EXPECTED_INODES = [
    ("create until full", "ENOSPC"),
    ("mkdir", "ENOSPC"),
    ("symlink", "ENOSPC"),
    ("whiteout", "ENOSPC"),
    ("copy-up", "ENOSPC"),
    ("copy-up after freeing", "ok"),
]
INODES = 40


def test_full_upper_gives_enospc_and_leaves_nothing_half_made(scratch):
    assert run_side(scratch / "layerfs", layerfs_side) == EXPECTED


def test_upper_out_of_inodes_gives_enospc(scratch):
    assert run_side(scratch / "layerfs", layerfs_side, inodes=INODES) == EXPECTED_INODES


@pytest.mark.parametrize("inodes", [None, INODES], ids=["bytes", "inodes"])
def test_kernel_overlay_does_the_same(scratch, needs_kernel_overlay, inodes):
    """The expectations above are the kernel's."""
    expected = EXPECTED_INODES if inodes else EXPECTED
    assert run_side(scratch / "kernel", kernel_side, inodes=inodes) == expected
