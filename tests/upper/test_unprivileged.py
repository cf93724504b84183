"""A normal user's writable mount: user.overlay.* xattrs, whiteouts as 0/0 devices
(allowed without privilege since Linux 5.8), and an upper the kernel mounts with
userxattr to show exactly what layerfs showed."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys

import pytest

from layerfs import treediff
from tests.support.layerspec import Dir, File, Whiteout, materialize_stack
from tests.support.mounting import REPO_ROOT, force_unmount, kernel_overlay_available, layerfs_mounted

PROPERTIES = ("type", "mode", "uid", "gid", "size", "target", "content", "nlink", "xattrs")

# Run as the user: the operations, then the merged tree as JSON.
SCRIPT = r"""
import json, os, sys
from layerfs import treediff
from tests.upper import ops
root = sys.argv[1]
from pathlib import Path
results = []
for op in [
    ops.create("new", b"by a user"), ops.write("d/a", b"A"), ops.unlink("d/b"),
    ops.mkdir("fresh"), ops.rmdir("empty"), ops.mkdir("empty"), ops.rename("d/c", "d/c2"),
    ops.rename("d", "d2"), ops.symlink("new", "link"), ops.chmod("top", 0o600),
    ops.setxattr("top", b"user.k", b"v"),
]:
    try:
        results.append(["ok", repr(op(Path(root)))])
    except OSError as exc:
        results.append(["err", exc.errno])
tree = treediff.snapshot(root)
print(json.dumps({"results": results, "tree": {
    path.hex(): {name: (getattr(entry, name).hex() if isinstance(getattr(entry, name), bytes)
                        else {k.hex(): v.hex() for k, v in entry.xattrs.items()}
                        if name == "xattrs" else getattr(entry, name))
                 for name in ("type", "mode", "uid", "gid", "size", "target", "content",
                              "nlink", "xattrs")}
    for path, entry in tree.items()}}))
"""


def test_a_users_upper_is_the_kernels_userxattr_format(scratch, unprivileged_user):
    if unprivileged_user is None:
        pytest.skip("runs as root only (it needs a second, unprivileged user)")
    uid = pwd.getpwnam(unprivileged_user).pw_uid
    stack = [
        {b"d/a": File(b"a", uid=uid, gid=uid), b"d/b": File(b"b", uid=uid, gid=uid),
         b"d/c": File(b"c", uid=uid, gid=uid), b"empty": Dir(uid=uid, gid=uid),
         b"top": File(b"t", uid=uid, gid=uid)},
        {b"d": Dir(uid=uid, gid=uid), b"d/gone": Whiteout(), b"x": File(b"x", uid=uid, gid=uid)},
    ]
    lowers = materialize_stack(stack, scratch, "user")
    upper, work, mnt = scratch / "upper", scratch / "work", scratch / "mnt"
    for path in (upper, work, mnt):
        path.mkdir()
        os.chown(path, uid, uid)
    for path in [scratch, *scratch.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, os.lstat(path).st_mode | 0o005 | (0o010 if path.is_dir() else 0))
    os.chown(lowers[0], uid, uid)
    os.chown(lowers[1], uid, uid)
    args = [a for layer in lowers for a in ("--layer", str(layer))]
    with layerfs_mounted(mnt, *args, "--upper", str(upper), "--work", str(work),
                         user=unprivileged_user):
        shown = subprocess.run(
            ["runuser", "-u", unprivileged_user, "--", "env", f"PYTHONPATH={REPO_ROOT}",
             sys.executable, "-c", SCRIPT, str(mnt)],
            capture_output=True, text=True, check=True).stdout
    seen = json.loads(shown)
    errors = [r for r in seen["results"] if r[0] == "err"]
    # A directory rename is EXDEV: the kernel follows no redirects with userxattr.
    assert errors == [["err", 18]], seen["results"]
    names = {os.fsdecode(bytes.fromhex(p)) for p in seen["tree"]}
    assert {"new", "fresh", "empty", "d/c2", "link"} <= names
    assert not {"d/b", "d/c", "d/gone"} & names
    # The format: user.overlay.* xattrs, never trusted.overlay.*.
    # A dir made over a whiteout is opaque; a new one in a merged dir is not
    # marked under userxattr (the kernel marks it only when it writes redirects).
    assert os.getxattr(upper / "empty", "user.overlay.opaque") == b"y"
    assert all(not name.startswith("trusted.") for path in upper.rglob("*")
               for name in os.listxattr(path, follow_symlinks=False))
    assert os.lstat(upper / "d" / "b").st_rdev == 0
    if kernel_overlay_available() is not None:
        return
    kernel = scratch / "kernel"
    kernel.mkdir()
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lowerdir},upperdir={upper},workdir={work},userxattr",
                    str(kernel)], check=True, capture_output=True)
    try:
        expected = treediff.snapshot(kernel)
    finally:
        force_unmount(kernel)
    expected_json = {
        path.hex(): {name: (getattr(entry, name).hex() if isinstance(getattr(entry, name), bytes)
                            else {k.hex(): v.hex() for k, v in entry.xattrs.items()}
                            if name == "xattrs" else getattr(entry, name))
                     for name in PROPERTIES}
        for path, entry in expected.items()}
    differences = [(os.fsdecode(bytes.fromhex(p)), expected_json.get(p), seen["tree"].get(p))
                   for p in sorted(expected_json.keys() | seen["tree"].keys())
                   if expected_json.get(p) != seen["tree"].get(p)]
    assert not differences, "\n".join(map(str, differences))
