"""Rootless by design: a normal user mounts the umoci-built image (devices, foreign owners,
setuid, long whiteouts) through a cache of its own and sees it exactly as ``umoci unpack``
as root does, through the sidecar the unpacker wrote."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.mounting import REPO_ROOT, force_unmount, layerfs_mounted

from .builtimages import build_umoci_layout, have, umoci_reference
from .mounting import snapshot

USER = "layerfs-images"

SNAPSHOT_AS_USER = """
import json, os, stat, sys, hashlib
base = os.fsencode(sys.argv[1])
tree = {}
def visit(directory):
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        rel = os.fsdecode(os.path.relpath(full, base))
        st = os.lstat(full)
        detail, size = None, st.st_size
        if stat.S_ISREG(st.st_mode):
            try:
                detail = hashlib.sha256(open(full, "rb").read()).hexdigest()
            except PermissionError:
                detail = "EACCES"
        elif stat.S_ISLNK(st.st_mode):
            detail, size = os.fsdecode(os.readlink(full)), 0
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            detail, size = st.st_rdev, 0
        elif stat.S_ISDIR(st.st_mode):
            size = 0
            try:
                visit(full)
            except PermissionError:
                pass
        else:
            size = st.st_size
        tree[rel] = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     size, detail]
visit(base)
print(json.dumps(tree))
"""

pytestmark = pytest.mark.skipif(not have("umoci"), reason="umoci is not installed")
needs_user = [
    pytest.mark.skipif(os.geteuid() != 0, reason="builds the image as root, then mounts as a "
                                                 "temporary user (needs useradd/runuser)"),
    pytest.mark.skipif(not have("useradd") or not have("runuser") or not have("fusermount3"),
                       reason="useradd, runuser and fusermount3 are needed"),
]


@pytest.fixture
def user():
    created = subprocess.run(["useradd", "-M", "-s", "/bin/false", USER],
                             capture_output=True).returncode == 0
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", fuse_mode | 0o666)  # as Debian ships it; some sandboxes use 0600
    try:
        probe = subprocess.run(["runuser", "-u", USER, "--", sys.executable, "-c",
                                f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
                                "import layerfs.cli"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip("a normal user cannot run this Python or read the repository: "
                        + (probe.stderr.strip().splitlines() or ["?"])[-1])
        yield pwd.getpwnam(USER)
    finally:
        os.chmod("/dev/fuse", fuse_mode)
        if created:
            subprocess.run(["userdel", USER], capture_output=True)


@needs_user[0]
@needs_user[1]
def test_user_sees_the_image_as_root_unpacks_it(user) -> None:
    work = Path(tempfile.mkdtemp(prefix="layerfs-rootless-", dir="/var/tmp"))
    mountpoint = work / "mnt"
    try:
        layout = build_umoci_layout(work / "build")
        reference = snapshot(umoci_reference(layout, "v4", work / "build"))
        for path in [work, *work.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, os.lstat(path).st_mode | 0o005 | (0o010 if path.is_dir() else 0))
        mountpoint.mkdir()
        cache = work / "cache"
        cache.mkdir()
        for path in (mountpoint, cache):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", USER, "--", "env", f"PYTHONPATH={REPO_ROOT}"]
        with layerfs_mounted(mountpoint, "--quiet", "--cache-dir", str(cache), f"{layout}:v4",
                             user=USER):
            result = subprocess.run([*as_user, sys.executable, "-c", SNAPSHOT_AS_USER,
                                     str(mountpoint)], capture_output=True, text=True, check=True)
        seen = {path: tuple(value) for path, value in json.loads(result.stdout).items()}
        # The unpack ran as the user: the disk holds the user's files, the sidecar the image's.
        assert all(os.lstat(p).st_uid == user.pw_uid for p in (cache / "layers").rglob("*"))
        private = {p for p in reference if p.startswith("private/")}
        assert private and not private & set(seen), "0700 root dir must stay closed to the user"
        differences = {}
        for path in set(reference) | set(seen):
            if path in private:
                continue
            want, got = reference.get(path), seen.get(path)
            if got is not None and got[-1] == "EACCES" and want is not None:
                got = got[:-1] + (want[-1],)
            if want != got:
                differences[path] = (got, want)
        assert differences == {}
    finally:
        force_unmount(mountpoint)
        shutil.rmtree(work, ignore_errors=True)


def _index_snapshot(index) -> dict:
    """The merged view as the index serves it (what the FUSE ops report), like snapshot()."""
    import hashlib
    import stat as st_

    tree = {}
    for path, node in index.walk():
        if not path:
            continue
        layer, relpath = index.backing(node)
        backing = layer.path_of(relpath)
        kind = st_.S_IFMT(node.mode)
        size = node.size
        if st_.S_ISREG(node.mode):
            with open(backing, "rb") as data:
                detail = hashlib.sha256(data.read()).hexdigest()
        elif st_.S_ISLNK(node.mode):
            detail, size = os.fsdecode(os.readlink(backing)), 0
        elif st_.S_ISCHR(node.mode) or st_.S_ISBLK(node.mode):
            detail, size = node.rdev, 0
        else:
            detail, size = None, 0 if st_.S_ISDIR(node.mode) else size
        tree[os.fsdecode(path)] = (kind, st_.S_IMODE(node.mode), node.uid, node.gid, size, detail)
    return tree


def test_unprivileged_unpack_serves_the_image_as_root_unpacks_it(tmp_path: Path) -> None:
    """Without the FUSE kernel side: unpack as a user would (nothing privileged on disk,
    everything else in the sidecar) and compare the index's view with umoci unpack."""
    from layerfs.images import read_image
    from layerfs.images.plan import materialize
    from layerfs.index import PathIndex
    from layerfs.unpack import LayerCache

    layout = build_umoci_layout(tmp_path / "build")
    reference = snapshot(umoci_reference(layout, "v4", tmp_path / "build"))
    cache = LayerCache(tmp_path / "cache", privileged=False)
    image = materialize(read_image(f"{layout}:v4"), cache, quiet=True)
    assert not any(os.path.isfile(p) and (os.lstat(p).st_mode & 0o6000)
                   for p in (tmp_path / "cache" / "layers").rglob("*") if not p.is_symlink())
    view = _index_snapshot(PathIndex(image.layers))
    differences = {p: (view.get(p), reference.get(p)) for p in set(view) | set(reference)
                   if view.get(p) != reference.get(p)}
    assert differences == {}
