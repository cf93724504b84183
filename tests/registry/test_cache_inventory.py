"""``layerfs cache ls`` and ``cache prune`` know what the registry code keeps in the cache:
lazy skeletons (listed with their size on disk, kept while a mount uses them or a known
image references them) and partial downloads (kept while a pull writes them)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from layerfs.unpack.locks import is_locked
from tests.support.mounting import layerfs_mounted

from ..images.mounting import mounted, snapshot
from .conftest import run, start
from .servers import FaultProxy
from .test_background import layer_digests, until
from .test_lazy import expected, lazy_registry  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


def skeletons(cache: Path) -> list[str]:
    lazy = cache / "lazy"
    return sorted(os.listdir(lazy)) if lazy.is_dir() else []


def partials(cache: Path) -> list[Path]:
    downloads = cache / "downloads"
    return sorted(downloads.glob("*.partial")) if downloads.is_dir() else []


def test_lazy_skeletons_are_listed_and_kept_while_used(lazy_registry, workdir):  # noqa: F811
    cache = workdir / "cache"
    ref = f"{lazy_registry.host}/test/chunked:v1"
    args = ("--lazy", "--insecure", "--cache-dir", str(cache))
    with mounted(f"docker://{ref}", workdir / "mnt", *args) as mnt:
        (mnt / "etc" / "os-release").read_text()  # fetch one file's data
        listing = run("cache", "ls", "--cache-dir", str(cache))
        assert listing.returncode == 0, listing.stderr
        rows = listing.stdout.split("LAZY BLOB")[1].splitlines()[1:4]
        assert all(" yes " in row and f"docker://{ref}" in row for row in rows), rows
        assert "3 lazy skeletons" in listing.stdout
    listing = run("cache", "ls", "--cache-dir", str(cache)).stdout
    assert " no " in listing and " yes " not in listing
    kept = run("cache", "prune", "--cache-dir", str(cache))  # a known image references them
    assert "lazy skeletons" not in kept.stdout and len(skeletons(cache)) == 3

    with mounted(f"docker://{ref}", workdir / "mnt", *args) as mnt:
        pruned = run("cache", "prune", "--all", "--cache-dir", str(cache))
        assert pruned.returncode == 0, pruned.stderr
        assert "kept 3 lazy skeletons or downloads in use" in pruned.stdout
        assert len(skeletons(cache)) == 3
        assert (mnt / "app" / "config.ini").read_text() == "[app]\nkey = value\n"
    everything = run("cache", "prune", "--all", "--cache-dir", str(cache))
    assert "removed 3 lazy skeletons" in everything.stdout
    assert skeletons(cache) == []
    assert "LAZY BLOB" not in run("cache", "ls", "--cache-dir", str(cache)).stdout


def test_a_skeleton_whose_blob_is_unpacked_whole_is_pruned(lazy_registry, expected,  # noqa: F811
                                                           workdir):
    cache = workdir / "cache"
    ref = f"{lazy_registry.host}/test/chunked:v1"
    with mounted(f"docker://{ref}", workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                 str(cache)):
        pass
    assert len(skeletons(cache)) == 3
    assert run("pull", "--insecure", "--quiet", "--cache-dir", str(cache), ref).returncode == 0
    assert "(unpacked whole)" in run("cache", "ls", "--cache-dir", str(cache)).stdout
    pruned = run("cache", "prune", "--cache-dir", str(cache))
    assert "removed 0 layers" in pruned.stdout and "removed 3 lazy skeletons" in pruned.stdout
    assert skeletons(cache) == []
    with mounted(f"docker://{ref}", workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert snapshot(mnt) == expected  # from the unpacked layers
    assert skeletons(cache) == []


def test_partial_downloads_are_listed_and_pruned_unless_a_pull_writes_them(registry, workdir):
    cache = workdir / "cache"
    big = layer_digests(registry.host, "test/big:v1")[0]
    with FaultProxy(registry.port, held=[big]) as proxy:
        pull = start("pull", "--insecure", "--quiet", "--cache-dir", str(cache),
                     f"{proxy.host}/test/big:v1")
        try:
            assert until(lambda: partials(cache) and is_locked(partials(cache)[0]))
            listing = run("cache", "ls", "--cache-dir", str(cache)).stdout
            assert "PARTIAL BLOB" in listing and "1 partial download," in listing
            assert big.partition(":")[2][:12] + " " in listing and listing.rstrip().count("yes")
            pruned = run("cache", "prune", "--all", "--cache-dir", str(cache))
            assert "kept 1 lazy skeleton or download in use" in pruned.stdout
            assert len(partials(cache)) == 1
            pull.send_signal(signal.SIGKILL)  # an interrupted pull: its partial stays
            pull.wait(timeout=30)
        finally:
            if pull.poll() is None:
                pull.kill()
            pull.wait(timeout=30)
            pull.stdout.close()
            pull.stderr.close()
    assert len(partials(cache)) == 1
    listing = run("cache", "ls", "--cache-dir", str(cache)).stdout
    assert "PARTIAL BLOB" in listing and "yes" not in listing.split("PARTIAL BLOB")[1]
    pruned = run("cache", "prune", "--cache-dir", str(cache))
    assert "removed 1 partial download" in pruned.stdout
    assert partials(cache) == []
    again = run("pull", "--insecure", "--quiet", "--cache-dir", str(cache),
                f"{registry.host}/test/big:v1")
    assert again.returncode == 0, again.stderr


def test_prune_during_a_background_pull_leaves_the_mount_whole(registry, workdir):
    cache, reference = workdir / "cache", workdir / "reference"
    image = f"{registry.host}/test/multi:v1"
    digests = layer_digests(registry.host, "test/multi:v1")
    with mounted(f"docker://{image}", workdir / "full", "--insecure", "--cache-dir",
                 str(reference)) as full:
        want = snapshot(full)
    mnt = workdir / "mnt"
    mnt.mkdir()
    with FaultProxy(registry.port, held=[digests[-1]]) as proxy:
        with layerfs_mounted(mnt, "--quiet", "--lazy", "--insecure", "--cache-dir", str(cache),
                             f"docker://{proxy.host}/test/multi:v1"):
            try:
                assert until(lambda: partials(cache))  # the held layer's download began
                pruned = run("cache", "prune", "--all", "--cache-dir", str(cache))
                assert pruned.returncode == 0, pruned.stderr
                assert "kept" in pruned.stdout
            finally:
                proxy.release.set()
            assert snapshot(mnt) == want
