"""layerfs shows exactly the kernel overlay's merged tree.

The same stack is written natively (0/0 devices, trusted.overlay.opaque) for
the kernel, and in every whiteout form for layerfs; both are mounted and
their full trees compared: type, mode, owner, size, mtime, rdev, link target,
xattrs, content, nlink, hard-link groups and names. Zero differences.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs import treediff
from tests.support.layerspec import (
    Dir,
    File,
    Hardlink,
    Special,
    Symlink,
    Whiteout,
    materialize_stack,
)
from tests.support.mounting import kernel_overlay_mounted, layerfs_mounted

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay", "each_engine")

LONG = b"L" * 255
ODD = [b"\xe9\xff", b"new\nline", b"sp ace:,=\\", b"-dash", LONG]


def full_stack() -> list[dict]:
    """Every file type, every deletion case, odd names, xattrs, hard links."""
    bottom = {
        b"etc": Dir(xattrs={b"user.dirattr": b"on a dir"}),
        b"etc/passwd": File(b"root:x:0:0\n"),
        b"etc/hosts": File(b"127.0.0.1 localhost\n", mode=0o600),
        b"etc/sub": Dir(mode=0o750),
        b"etc/sub/deep": File(b"deep"),
        b"bin/sh": File(b"#!shell", mode=0o755),
        b"bin/link": Symlink(b"sh"),
        b"bin/abs": Symlink(b"/etc/passwd"),
        b"bin/hard": Hardlink(b"bin/sh"),
        b"data/dir1": Dir(xattrs={b"user.dirattr": b"lower"}),
        b"data/dir1/a": File(b"a"),
        b"data/dir1/b": File(b"b"),
        b"opq/old1": File(b"old"),
        b"opq/sub/x": File(b"x"),
        b"gone/child": File(b"child"),
        b"gone/subdir/grandchild": File(b"gc"),
        b"gonefile": File(b"bye"),
        b"swap1/child": File(b"in a dir that becomes a file"),
        b"swap2": File(b"a file that becomes a dir"),
        b"dev/null": Special("chr", os.makedev(1, 3), 0o666),
        b"dev/sda": Special("blk", os.makedev(8, 0), 0o660),
        b"run/fifo": Special("fifo", mode=0o600),
        b"run/sock": Special("sock", mode=0o755),
        b"suid": File(b"s", mode=0o4755, uid=1000, gid=1000),
        b"sgid-dir": Dir(mode=0o2775, uid=12, gid=34),
        b"sticky": Dir(mode=0o1777),
        b"xattrs": File(b"x", xattrs={b"user.one": b"1", b"user.bin": b"\x00\xff",
                                      b"trusted.secret": b"root only"}),
        b"empty": File(b""),
        b"shadowed-link": Symlink(b"nowhere"),
    }
    bottom.update({b"odd/" + name: File(name[:20]) for name in ODD})
    middle = {
        b"etc": Dir(mode=0o700, xattrs={b"user.dirattr": b"middle"}),
        b"etc/passwd": File(b"root:x:0:0:changed\n"),
        b"etc/hosts": Whiteout(),
        b"etc/new": File(b"new in middle"),
        b"opq": Dir(opaque=True),
        b"opq/new": File(b"new"),
        b"gone": Whiteout(),
        b"gonefile": Whiteout(),
        b"ghost": Whiteout(),
        b"data/dir1/a": Whiteout(),
        b"swap1": File(b"now a file"),
        b"swap2/inside": File(b"now a dir"),
        b"odd/\xe9\xff": Whiteout(),
        b"shadowed-link": File(b"a file over a symlink"),
    }
    top = {
        b"etc/sub": Whiteout(),
        b"gone": Dir(mode=0o711),
        b"gone/new": File(b"re-created"),
        b"bin/sh": File(b"#!new shell", mode=0o755),
        b"h1": File(b"linked", mode=0o640),
        b"h2": Hardlink(b"h1"),
        b"nested/h3": Hardlink(b"h1"),
        b"opq": Dir(mode=0o755),
        b"opq/top": File(b"top"),
    }
    return [bottom, middle, top]


def compare(scratch: Path, stack: list[dict], form: str, kernel_options=()) -> list:
    native = materialize_stack(stack, scratch, "native" if form != "user" else "user")
    layers = native if form in ("native", "user") else materialize_stack(stack, scratch, form)
    kernel_mnt, layerfs_mnt = scratch / "kernel", scratch / "layerfs"
    kernel_mnt.mkdir()
    layerfs_mnt.mkdir()
    with kernel_overlay_mounted(kernel_mnt, native, kernel_options):
        expected = treediff.snapshot(kernel_mnt)
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    with layerfs_mounted(layerfs_mnt, *args):
        seen = treediff.snapshot(layerfs_mnt)
    # Where the kernel lists a whiteout it then cannot stat (a directory only
    # one layer provides is listed unfiltered), layerfs hides the marker.
    return [d for d in treediff.diff(expected, seen)
            if not (d.property == "presence" and d.left == treediff.PHANTOM)]


@pytest.mark.parametrize("form", ["native", "oci", "xwhiteout"])
def test_full_stack_matches_the_kernel(scratch, needs_root, form):
    differences = compare(scratch, full_stack(), form)
    assert not differences, "\n".join(map(str, differences))


def test_user_xattr_opaque_matches_the_kernel_with_userxattr(scratch, needs_root):
    differences = compare(scratch, full_stack(), "user", kernel_options=["userxattr"])
    assert not differences, "\n".join(map(str, differences))


def test_single_layer_matches_the_kernel(scratch, needs_root):
    differences = compare(scratch, [full_stack()[0]], "native")
    # The kernel cannot mount one lower layer alone; the empty bottom layer it
    # gets makes its root a merged directory, shown with nlink 1.
    differences = [d for d in differences if (d.path, d.property) != (b"", "nlink")]
    assert not differences, "\n".join(map(str, differences))


# -- random stacks -------------------------------------------------------------------

NAMES = [b"a", b"b", b"c"]
PATHS = [b"/".join(p) for p in [(a,) for a in NAMES] + [(a, b) for a in NAMES for b in NAMES]
         + [(a, b, c) for a in NAMES[:2] for b in NAMES[:2] for c in NAMES]]


def item_strategy(path: bytes):
    return st.one_of(
        st.builds(File, content=st.binary(max_size=8), mode=st.sampled_from([0o644, 0o600, 0o755]),
                  xattrs=st.sampled_from([{}, {b"user.k": path}])),
        st.builds(Dir, mode=st.sampled_from([0o755, 0o700]), opaque=st.booleans(),
                  xattrs=st.sampled_from([{}, {b"user.d": path}])),
        st.just(Symlink(b"../" + path)),
        st.just(Whiteout()),
        st.just(Special("fifo")),
    )


@st.composite
def layer_strategy(draw):
    paths = draw(st.lists(st.sampled_from(PATHS), unique=True, max_size=8))
    layer: dict = {}
    for path in sorted(paths, key=lambda p: p.count(b"/")):
        parents = [path.rsplit(b"/", n)[0] for n in range(1, path.count(b"/") + 1)]
        if any(p in layer and not isinstance(layer[p], Dir) for p in parents):
            continue
        layer[path] = draw(item_strategy(path))
    files = [p for p, item in layer.items() if isinstance(item, File)]
    if files and draw(st.booleans()):
        target = files[0]
        link = target + b"-link"
        parents = [link.rsplit(b"/", n)[0] for n in range(1, link.count(b"/") + 1)]
        if not any(p in layer and not isinstance(layer[p], Dir) for p in parents):
            layer[link] = Hardlink(target)
    return layer


@settings(max_examples=int(os.environ.get("LAYERFS_KERNEL_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(stack=st.lists(layer_strategy(), min_size=2, max_size=4),
       form=st.sampled_from(["native", "oci"]))
def test_random_stacks_match_the_kernel(tmp_path_factory, needs_root, stack, form):
    scratch = tmp_path_factory.mktemp("stack", numbered=True)
    try:
        differences = compare(scratch, stack, form)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert not differences, "\n".join(map(str, differences))
