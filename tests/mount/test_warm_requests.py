"""With the native engine a warm walk of a read-only mount is the kernel's alone.

Behaviour, not timing: the daemon logs every request under --debug; a second
`find` (and `cat` of the files) on a mounted tree must send no OPENDIR,
READDIR(PLUS), LOOKUP, GETATTR, OPEN or READ: the kernel opened without asking
(zero-message opens) and keeps the listings, attributes and pages.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from tests.support.mounting import layerfs_mounted

REQUEST = re.compile(r"layerfs\.fuse\S* DEBUG: ([A-Z_0-9]+) nodeid=")
WARM_FREE = {"OPENDIR", "READDIR", "READDIRPLUS", "LOOKUP", "GETATTR", "OPEN", "READ",
             "RELEASE", "RELEASEDIR", "FLUSH"}


def _stack(root: Path) -> list[Path]:
    layers = []
    for index in range(3):
        layer = root / f"layer{index}"
        for directory in range(5):
            sub = layer / "usr" / f"d{directory}"
            sub.mkdir(parents=True)
            for number in range(20):
                (sub / f"f{index}-{number}").write_bytes(b"x" * (number * 97))
        layers.append(layer)
    return layers


def _requests(log: Path) -> list[str]:
    """Opcodes logged so far, once the log stopped growing."""
    size, deadline = -1, time.monotonic() + 10
    while size != log.stat().st_size and time.monotonic() < deadline:
        size = log.stat().st_size
        time.sleep(0.3)
    return REQUEST.findall(log.read_text())


def test_a_warm_walk_and_read_send_no_request(scratch, monkeypatch):
    monkeypatch.setenv("LAYERFS_ENGINE", "native")
    layers = _stack(scratch)
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    log = scratch / "daemon.log"
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    walk = ["sh", "-c", f"find {mountpoint} -printf '%s %m %p\\n' && "
                        f"find {mountpoint} -type f -exec cat {{}} +"]
    with layerfs_mounted(mountpoint, "--debug", "--log", str(log), *args):
        cold = subprocess.run(walk, capture_output=True, check=True).stdout
        first = _requests(log)
        assert "READDIRPLUS" in first and first.count("OPENDIR") == 1  # ENOSYS, once
        # This VM reclaims cache proactively: a walk it spoiled is walked again.
        for _ in range(3):
            before = len(_requests(log))
            warm = subprocess.run(walk, capture_output=True, check=True).stdout
            second = _requests(log)[before:]
            if not WARM_FREE & set(second):
                break
    assert warm == cold
    assert "OPENDIR" not in second and "OPEN" not in second
    assert not WARM_FREE & set(second), second


def test_noxattrs_answers_the_first_xattr_request_and_no_other(scratch, monkeypatch):
    """ls -l asks every entry for two xattrs; with -o noxattrs the kernel is told once."""
    monkeypatch.setenv("LAYERFS_ENGINE", "native")
    layers = _stack(scratch)
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    log = scratch / "daemon.log"
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    with layerfs_mounted(mountpoint, "-o", "noxattrs", "--debug", "--log", str(log), *args):
        listing = subprocess.run(["ls", "-laR", str(mountpoint)], capture_output=True,
                                 check=True).stdout
        requests = _requests(log)
        probe = subprocess.run(["getfattr", "-n", "user.layerfs.layer",
                                str(mountpoint / "usr")], capture_output=True, text=True)
    assert b"f2-19" in listing
    assert requests.count("GETXATTR") <= 1, requests.count("GETXATTR")
    assert probe.returncode != 0 and "not supported" in probe.stderr.lower()
