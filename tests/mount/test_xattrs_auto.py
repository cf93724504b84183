"""``-o xattrs=auto`` (the default): a read-only mount of layers without xattrs stops
serving GETXATTR once that is known, so ``ls -l`` costs no request per entry.

Behaviour, not timing: the daemon logs every request under --debug and says when it
knows. Counted here: the GETXATTR requests of an ``ls -laR`` (it asks every entry
for two xattrs). Once switched off, the kernel answers EOPNOTSUPP itself where the
kernel overlay would say ENODATA: that is the visible difference, shown here too.
Layers with xattrs and writable mounts keep serving them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.images.tarbuild import d, f, layer_tar
from tests.support.mounting import layerfs_mounted

REQUEST = re.compile(r"layerfs\.fuse\S* DEBUG: ([A-Z_0-9]+) nodeid=")
SWITCHED_OFF = "no layer holds xattrs"
KEPT = "the layers hold xattrs"
FILES = 25


def _stack(root: Path, *, xattr: bool = False) -> list[str]:
    """Three layer dirs, as --layer arguments; with ``xattr`` one file carries user.note."""
    args = []
    for index in range(3):
        layer = root / f"layer{index}"
        sub = layer / "usr" / f"d{index}"
        sub.mkdir(parents=True)
        for number in range(FILES // 3):
            (sub / f"f{number}").write_bytes(b"x" * number)
        args += ["--layer", str(layer)]
    if xattr:
        os.setxattr(root / "layer1/usr/d1/f1", "user.note", b"kept")
    return args


def _log_text(log: Path, wanted: str) -> str:
    """The daemon's log once it holds ``wanted`` (and stopped growing)."""
    deadline = time.monotonic() + 30
    while wanted not in (text := log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"the daemon never logged {wanted!r}:\n{text}"
        time.sleep(0.1)
    size = -1
    while size != log.stat().st_size:
        size = log.stat().st_size
        time.sleep(0.3)
    return log.read_text()


def _ls_getxattrs(mountpoint: Path, log: Path) -> int:
    """The GETXATTR requests an ``ls -laR`` of the mount sends."""
    before = REQUEST.findall(_log_text(log, "index complete"))
    listing = subprocess.run(["ls", "-laR", str(mountpoint)], capture_output=True, check=True)
    assert b"f7" in listing.stdout
    after = REQUEST.findall(_log_text(log, "index complete"))
    return after[len(before):].count("GETXATTR")


def _getxattr_errno(path: Path, name: str) -> int:
    with pytest.raises(OSError) as caught:
        os.getxattr(path, name, follow_symlinks=False)
    return caught.value.errno


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setenv("LAYERFS_ENGINE", "native")


def test_auto_turns_xattrs_off_for_layers_without_any(scratch, native):
    args = _stack(scratch)
    mountpoint, log = scratch / "mnt", scratch / "daemon.log"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, "--debug", "--log", str(log), *args):
        # layerfs's own names never switch xattrs off...
        assert os.getxattr(mountpoint / "usr/d1", "user.layerfs.layer").startswith(b"2 ")
        _log_text(log, SWITCHED_OFF)
        assert os.getxattr(mountpoint / "usr", "user.layerfs.layer").startswith(b"3 ")
        assert os.listxattr(mountpoint / "usr") == []
        getxattrs = _ls_getxattrs(mountpoint, log)
        # ...but once another name was asked for, the kernel refuses them all itself.
        refused = _getxattr_errno(mountpoint / "usr", "user.layerfs.layer")
        missing = _getxattr_errno(mountpoint / "usr/d0/f1", "user.note")
    assert getxattrs <= 1, getxattrs  # the one answered ENOSYS
    assert refused == missing == errno.EOPNOTSUPP


def test_auto_keeps_xattrs_when_a_layer_has_one(scratch, native):
    args = _stack(scratch, xattr=True)
    mountpoint, log = scratch / "mnt", scratch / "daemon.log"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, "--debug", "--log", str(log), *args):
        _log_text(log, KEPT)
        getxattrs = _ls_getxattrs(mountpoint, log)
        note = os.getxattr(mountpoint / "usr/d1/f1", "user.note")
        missing = _getxattr_errno(mountpoint / "usr/d0/f1", "user.note")
    assert getxattrs >= FILES, getxattrs
    assert note == b"kept" and missing == errno.ENODATA


@pytest.mark.parametrize("how", [["--upper", "UPPER"], ["-o", "xattrs=on"]],
                         ids=["writable", "xattrs=on"])
def test_writable_mounts_and_xattrs_on_keep_serving_them(scratch, native, how):
    args = _stack(scratch)
    mountpoint, log = scratch / "mnt", scratch / "daemon.log"
    mountpoint.mkdir()
    (scratch / "upper").mkdir()
    how = [str(scratch / "upper") if arg == "UPPER" else arg for arg in how]
    with layerfs_mounted(mountpoint, *how, "--debug", "--log", str(log), *args):
        getxattrs = _ls_getxattrs(mountpoint, log)
        text = log.read_text()
        missing = _getxattr_errno(mountpoint / "usr/d0/f1", "user.note")
        layer = os.getxattr(mountpoint / "usr", "user.layerfs.layer")
    assert SWITCHED_OFF not in text
    assert getxattrs >= FILES, getxattrs
    assert missing == errno.ENODATA and layer


def _docker_archive(path: Path, tar: bytes) -> Path:
    """A one-layer ``docker save`` archive (unpacked into the layer cache when mounted)."""
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["t:1"],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in (("layer.tar", tar), ("config.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("xattrs", [{}, {"user.note": b"kept"}], ids=["none", "user.note"])
def test_auto_reads_what_the_unpack_recorded(scratch, native, xattrs):
    tar = layer_tar([d("usr"), *(f(f"usr/f{n}", b"x") for n in range(FILES)),
                     f("usr/noted", b"n", xattrs=xattrs)])
    image = _docker_archive(scratch / "image.tar", tar)
    mountpoint, log = scratch / "mnt", scratch / "daemon.log"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, "--cache-dir", str(scratch / "cache"), "--debug",
                         "--log", str(log), str(image)):
        text = _log_text(log, KEPT if xattrs else SWITCHED_OFF)
        getxattrs = _ls_getxattrs(mountpoint, log)
    meta = json.loads(next((scratch / "cache/layers").glob("*/meta.json")).read_text())
    assert meta["info"]["has_xattrs"] is bool(xattrs)
    if xattrs:
        assert getxattrs >= FILES, getxattrs
    else:
        assert "walking" not in text  # known from the record
        assert getxattrs <= 1, getxattrs
