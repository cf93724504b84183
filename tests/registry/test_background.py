"""layerfs mount --lazy of plain gzip layers: the mount is live at once, the layers are
pulled whole in the background by the daemon, and requests that need the tree wait for
them (statfs and the root's stat do not). A background pull that fails is an EIO for
the readers, logged with the layer's digest, and the mount still unmounts cleanly.

The proxy holds a layer's body (headers sent, body withheld) to catch the mount while
that layer is being downloaded."""

from __future__ import annotations

import errno
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.mounting import force_unmount, is_mounted, layerfs_mounted

from ..images.mounting import snapshot
from .conftest import run
from .servers import FaultProxy
from .test_lazy import expected, run_skopeo_inspect  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")

WAIT = 120.0
"""Bound of every wait here (never a timing assertion)."""


def layer_digests(host: str, image: str) -> list[str]:
    return [layer["digest"] for layer in json.loads(run_skopeo_inspect(host, image))["layers"]]


def daemons_serving(mountpoint: Path) -> list[int]:
    """Processes whose command line names ``mountpoint`` (unique to the test)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(mountpoint) in arguments and b"layerfs" in arguments:
            found.append(int(entry))
    return found


def until(condition, timeout: float = WAIT) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gone(pids: list[int], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def background_mount(workdir: Path) -> Iterator[Path]:
    """A mountpoint whose daemon (started without -f) is always unmounted and stopped."""
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    try:
        yield mountpoint
    finally:
        pids = daemons_serving(mountpoint)
        force_unmount(mountpoint)
        if not gone(pids, 10):
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


def test_mount_returns_before_a_gzip_layer_is_pulled(registry, expected, workdir,  # noqa: F811
                                                      background_mount):
    digests = layer_digests(registry.host, "test/multi:v1")
    cache, log = workdir / "cache", workdir / "daemon.log"
    with FaultProxy(registry.port, held=[digests[-1]]) as proxy:
        try:
            result = run("mount", "--lazy", "--insecure", "--quiet", "--cache-dir", str(cache),
                         "--log", str(log), f"docker://{proxy.host}/test/multi:v1",
                         str(background_mount), timeout=WAIT)
            assert result.returncode == 0, result.stderr
            assert is_mounted(background_mount)
            daemons = daemons_serving(background_mount)
            assert daemons
            # returned while the top layer's body is still held back by the proxy
            assert not proxy.release.is_set()
            assert until(lambda: proxy.blob_requests(digests[-1]))  # asked for, held
            assert len(list((cache / "layers").iterdir())) < 3
            # answered at once: df, the mountpoint's own stat
            assert os.statvfs(background_mount).f_bsize > 0
            assert os.stat(background_mount).st_mode & 0o040000
            with ThreadPoolExecutor(2) as pool:
                listing = pool.submit(os.listdir, background_mount)
                cat = pool.submit((background_mount / "etc" / "os-release").read_text)
                waiting, _ = wait_futures([listing, cat], timeout=0.5)
                assert not waiting  # no tree to show while a layer is missing
                proxy.release.set()
                assert sorted(listing.result(timeout=WAIT)) == ["app", "bin", "etc", "usr"]
                assert cat.result(timeout=WAIT) == "NAME=layerfs-test\nVERSION=2\n"
            assert snapshot(background_mount) == expected
            assert len(list((cache / "layers").iterdir())) == 3
        finally:
            proxy.release.set()
        assert run("umount", str(background_mount)).returncode == 0
        assert gone(daemons), "the daemon outlived its mount"
    assert not is_mounted(background_mount)
    text = log.read_text()
    assert "in the background" in text and digests[-1] in text


@pytest.mark.parametrize("failure", ["digest mismatch", "registry stopped"])
def test_a_failed_background_pull_is_an_io_error_and_unmounts_cleanly(
        fresh_registry, workdir, failure):
    server = fresh_registry
    digests = layer_digests(server.host, "test/multi:v1")
    bad = digests[1]
    if failure == "digest mismatch":
        blob = server.blob_path(bad)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.write_bytes(bytes(data))
    log = workdir / "daemon.log"
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    with FaultProxy(server.port, held=[bad]) as proxy:
        with layerfs_mounted(mountpoint, "--quiet", "--lazy", "--insecure", "--retries", "1",
                             "--cache-dir", str(workdir / "cache"), "--log", str(log),
                             f"docker://{proxy.host}/test/multi:v1") as daemon:
            if failure == "registry stopped":
                server.stop()
            proxy.release.set()
            for attempt in (os.listdir, lambda p: (p / "etc" / "os-release").read_bytes()):
                with pytest.raises(OSError) as raised:
                    attempt(mountpoint)
                assert raised.value.errno == errno.EIO
            assert os.statvfs(mountpoint).f_bsize > 0  # still up
            assert run("umount", str(mountpoint)).returncode == 0
            assert daemon.wait(timeout=WAIT) == 0
    assert not is_mounted(mountpoint)
    errors = [line for line in log.read_text().splitlines() if " ERROR: " in line]
    # the layer that failed first: the tampered one, or any whose download the stop cut
    named = [bad] if failure == "digest mismatch" else digests
    assert errors and any(digest in errors[0] for digest in named), errors


def test_unmount_during_a_background_pull(registry, workdir, background_mount):
    """The held download is cut off: the daemon goes with its mount, leaving the layer
    to a later mount or pull."""
    digests = layer_digests(registry.host, "test/multi:v1")
    cache = workdir / "cache"
    with FaultProxy(registry.port, held=[digests[-1]]) as proxy:
        try:
            result = run("mount", "--lazy", "--insecure", "--quiet", "--cache-dir", str(cache),
                         f"docker://{proxy.host}/test/multi:v1", str(background_mount),
                         timeout=WAIT)
            assert result.returncode == 0, result.stderr
            daemons = daemons_serving(background_mount)
            assert daemons and until(lambda: proxy.blob_requests(digests[-1]))
            assert run("umount", str(background_mount)).returncode == 0
            assert not is_mounted(background_mount)
            assert gone(daemons, WAIT)
        finally:
            proxy.release.set()
    assert not list((cache / "tmp").glob("[0-9]*")) if (cache / "tmp").is_dir() else True


def test_writable_lazy_mount_pulls_gzip_layers_first(registry, expected, workdir):  # noqa: F811
    """A writable mount's upper needs the merged tree at once: gzip layers are pulled
    before it goes live."""
    from ..images.mounting import mounted
    upper = workdir / "upper"
    upper.mkdir()
    with mounted(f"docker://{registry.host}/test/multi:v1", workdir / "mnt", "--lazy",
                 "--insecure", "--cache-dir", str(workdir / "cache"), "--upper",
                 str(upper)) as mnt:
        assert (mnt / "etc" / "os-release").read_text() == "NAME=layerfs-test\nVERSION=2\n"
        (mnt / "etc" / "os-release").write_text("changed\n")
    assert (upper / "etc" / "os-release").read_text() == "changed\n"


def test_writable_lazy_mount_shows_the_pull_on_a_terminal(registry, workdir):
    """The gzip layers a writable --lazy mount pulls before going live show progress."""
    from tests.support.mounting import layerfs_command
    from tests.support.terminal import run_on_terminal

    from .conftest import layerfs_env
    upper, mnt = workdir / "upper", workdir / "mnt"
    upper.mkdir()
    mnt.mkdir()
    command = layerfs_command("mount", "--lazy", "--insecure", "--cache-dir",
                              str(workdir / "cache"), "--upper", str(upper),
                              f"docker://{registry.host}/test/multi:v1", str(mnt))
    try:
        status, _, terminal = run_on_terminal(command, layerfs_env({"NO_COLOR": "1"}))
        assert status == 0, terminal
        assert is_mounted(mnt)
    finally:
        force_unmount(mnt)
    pulled = [line for line in terminal.decode(errors="replace").splitlines()
              if line.rstrip().endswith(" done")]
    assert pulled, terminal  # one row per layer pulled whole, finished
    assert all("/" in line and "100%" in line for line in pulled), pulled
