"""layerfs pull and mount docker:// against a real registry (distribution) on loopback:
the mounted tree equals umoci's unpack of the same image; layers are cached, shared and
fetched in parallel; -o writes an OCI layout other tools read."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..images.mounting import mounted, snapshot
from .conftest import layerfs_env, run
from .images import manifest_of, push, unpack_reference
from .servers import FaultProxy

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


def cached_layers(cache: Path) -> set[str]:
    layers = cache / "layers"
    return {p.name for p in layers.iterdir()} if layers.is_dir() else set()


def test_pull_then_mount_equals_umoci_unpack(registry, layouts, workdir):
    cache = workdir / "cache"
    ref = f"{registry.host}/test/multi:v1"
    result = run("pull", "--insecure", "--cache-dir", str(cache), ref)
    assert result.returncode == 0, result.stderr
    assert f"{ref}: 3 layers (3 fetched, 0 cached)" in result.stdout
    assert len(cached_layers(cache)) == 3
    assert not list((cache / "downloads").iterdir())  # partial files gone once unpacked

    expected = snapshot(unpack_reference(layouts, "multi", workdir / "umoci"))
    with mounted(f"docker://{ref}", workdir / "mnt", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert snapshot(mnt) == expected
        assert (mnt / "etc" / "os-release").read_text() == "NAME=layerfs-test\nVERSION=2\n"
        assert not (mnt / "etc" / "hosts").exists()  # whited out by layer 2
        assert sorted(os.listdir(mnt / "usr" / "share" / "doc")) == ["only.txt"]
        assert os.stat(mnt / "app" / "data.bin").st_ino == \
            os.stat(mnt / "app" / "data-link.bin").st_ino


def test_second_pull_uses_the_cache_without_fetching_layers(registry, workdir):
    cache = workdir / "cache"
    with FaultProxy(registry.port) as proxy:
        ref = f"{proxy.host}/test/multi:v1"
        assert run("pull", "--insecure", "--cache-dir", str(cache), ref).returncode == 0
        assert len([r for r in proxy.log if "/blobs/" in r.path]) == 4  # config + 3 layers
        proxy.log.clear()
        again = run("pull", "--insecure", "--cache-dir", str(cache), ref)
        assert again.returncode == 0, again.stderr
        assert "(0 fetched, 3 cached)" in again.stdout
        # only the config is fetched again: it names the DiffIDs, hence the chainIDs
        assert len([r for r in proxy.log if "/blobs/" in r.path]) == 1


def test_mount_docker_url_pulls_what_is_missing(registry, layouts, workdir):
    cache = workdir / "cache"
    ref = f"{registry.host}/test/multi:v1"
    expected = snapshot(unpack_reference(layouts, "multi", workdir / "umoci"))
    with mounted(f"oci://{ref}", workdir / "mnt", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert snapshot(mnt) == expected
    assert len(cached_layers(cache)) == 3


def test_shared_base_layer_is_fetched_once(registry, layouts, workdir):
    """Two tags whose images share their bottom layers: the second pull fetches only its own."""
    cache = workdir / "cache"
    base = f"{registry.host}/test/multi:v1"
    assert run("pull", "--insecure", "--cache-dir", str(cache), base).returncode == 0
    push(layouts, "multi", f"{registry.host}/other/copy:v1")
    again = run("pull", "--insecure", "--cache-dir", str(cache),
                f"{registry.host}/other/copy:v1")
    assert again.returncode == 0, again.stderr
    assert "(0 fetched, 3 cached)" in again.stdout
    assert len(cached_layers(cache)) == 3


def test_pull_by_digest(registry, layouts, workdir):
    cache = workdir / "cache"
    first = run("pull", "--insecure", "--cache-dir", str(cache), f"{registry.host}/test/multi:v1")
    digest = first.stdout.strip().rsplit(" ", 1)[1]
    by_digest = run("pull", "--insecure", "--cache-dir", str(workdir / "c2"),
                    f"docker://{registry.host}/test/multi@{digest}")
    assert by_digest.returncode == 0, by_digest.stderr
    assert digest in by_digest.stdout


def test_layers_are_fetched_in_parallel(registry, workdir):
    cache = workdir / "cache"
    with FaultProxy(registry.port, rate=2 << 20) as proxy:  # 6 layers of 512 KiB, slowed
        result = run("pull", "--insecure", "--jobs", "3", "--cache-dir", str(cache),
                     f"{proxy.host}/test/many:v1")
        assert result.returncode == 0, result.stderr
        assert proxy.max_concurrent_blobs >= 2
        serial = FaultProxy(registry.port, rate=2 << 20)
    with serial:
        result = run("pull", "--insecure", "--jobs", "1", "--cache-dir", str(workdir / "c2"),
                     f"{serial.host}/test/many:v1")
        assert result.returncode == 0, result.stderr
        assert serial.max_concurrent_blobs == 1


def test_oci_layout_output_is_readable_by_skopeo_and_umoci(registry, layouts, workdir):
    cache = workdir / "cache"
    out = workdir / "out"
    ref = f"{registry.host}/test/multi:v1"
    result = run("pull", "--insecure", "--cache-dir", str(cache), "-o", str(out), ref)
    assert result.returncode == 0, result.stderr
    index = json.loads((out / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in index["manifests"]] == ["v1"]
    assert manifest_of(out, "v1")["layers"] == manifest_of(layouts, "multi")["layers"]
    inspected = subprocess.run(["skopeo", "inspect", f"oci:{out}:v1"], capture_output=True,
                               text=True, check=True)
    assert len(json.loads(inspected.stdout)["Layers"]) == 3
    expected = snapshot(unpack_reference(layouts, "multi", workdir / "umoci"))
    assert snapshot(unpack_reference(out, "v1", workdir / "umoci-out")) == expected
    # the layers were cached too: a second -o into a new layout reuses them and fetches blobs
    second = run("pull", "--insecure", "--cache-dir", str(cache), "-o", str(workdir / "out2"),
                 ref)
    assert second.returncode == 0, second.stderr
    assert manifest_of(workdir / "out2", "v1") == manifest_of(out, "v1")


def test_layout_blobs_fill_an_empty_cache_without_fetching(registry, workdir):
    out = workdir / "out"
    ref = f"{registry.host}/test/multi:v1"
    assert run("pull", "--insecure", "--cache-dir", str(workdir / "c1"), "-o", str(out),
               ref).returncode == 0
    with FaultProxy(registry.port) as proxy:
        result = run("pull", "--insecure", "--cache-dir", str(workdir / "c2"), "-o", str(out),
                     f"{proxy.host}/test/multi:v1")
        assert result.returncode == 0, result.stderr
        layer_gets = [r for r in proxy.log if "/blobs/" in r.path]
        assert len(layer_gets) == 1  # only the config
    assert len(cached_layers(workdir / "c2")) == 3


def test_progress_on_a_terminal(registry, workdir):
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "layerfs", "pull", "--insecure", "--cache-dir",
             str(workdir / "cache"), f"{registry.host}/test/multi:v1"],
            env=layerfs_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=follower)
        os.close(follower)
        follower = -1
        output = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=60) == 0
        process.stdout.close()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    text = output.decode(errors="replace")
    assert text.count("done") >= 3  # one line per layer
    assert "\033[" in text


def test_quiet_when_not_a_terminal(registry, workdir):
    result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"),
                 f"{registry.host}/test/multi:v1")
    assert result.returncode == 0
    assert result.stderr == ""


def test_multi_arch_index_picks_the_platform(registry, layouts, workdir):
    from .images import make_index
    make_index(layouts, "multiarch", {"linux/amd64": "multi", "linux/arm64": "many"})
    push(layouts, "multiarch", f"{registry.host}/test/multiarch:v1", "--all")
    ref = f"{registry.host}/test/multiarch:v1"
    arm = run("pull", "--insecure", "--platform", "linux/arm64", "--cache-dir",
              str(workdir / "c1"), ref)
    assert arm.returncode == 0, arm.stderr
    assert "6 layers" in arm.stdout
    amd = run("pull", "--insecure", "--platform", "linux/amd64", "--cache-dir",
              str(workdir / "c2"), ref)
    assert amd.returncode == 0, amd.stderr
    assert "3 layers" in amd.stdout
    missing = run("pull", "--insecure", "--platform", "linux/s390x", "--cache-dir",
                  str(workdir / "c3"), ref)
    assert missing.returncode == 1
    assert "no image for platform linux/s390x" in missing.stderr
    assert "linux/amd64" in missing.stderr and "linux/arm64" in missing.stderr


def test_pulled_layers_are_kept_by_cache_prune(registry, workdir):
    cache = str(workdir / "cache")
    ref = f"{registry.host}/test/multi:v1"
    assert run("pull", "--insecure", "--cache-dir", cache, ref).returncode == 0
    listing = run("cache", "ls", "--cache-dir", cache)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count(f"docker://{ref}") == 3  # each layer names the image
    pruned = run("cache", "prune", "--cache-dir", cache)
    assert pruned.returncode == 0 and "removed 0 layers" in pruned.stdout
    assert len(cached_layers(workdir / "cache")) == 3
    everything = run("cache", "prune", "--all", "--cache-dir", cache)
    assert "removed 3 layers" in everything.stdout


def test_the_same_blob_twice_in_one_image(registry, layouts, workdir):
    """Docker images repeat the empty layer's blob: both copies download at once."""
    import gzip
    import hashlib
    import io
    import tarfile

    from .upload import upload_image
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("same.txt")
        data = os.urandom(1 << 20)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = buffer.getvalue()
    blob = gzip.compress(tar_bytes)
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id] * 3}}).encode()
    layer = (blob, "application/vnd.oci.image.layer.v1.tar+gzip", {})
    upload_image(registry.host, "test/twice", "v1", config, [layer] * 3)
    result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"),
                 f"{registry.host}/test/twice:v1")
    assert result.returncode == 0, result.stderr
    assert len(cached_layers(workdir / "cache")) == 3  # three chainIDs, one blob
    assert not list((workdir / "cache" / "downloads").iterdir())


def test_a_pulled_image_mounts_with_the_registry_down(layouts, workdir):
    """pull, stop the registry, mount by tag (one line says the cached manifest is used)
    and by digest (not asked at all); --pull=always must reach it, --pull=never must
    find it pulled."""
    from layerfs.explore.mounts import force_unmount, is_mounted

    from .servers import RegistryServer

    (workdir / "reg").mkdir()
    cache = ["--cache-dir", str(workdir / "cache")]
    mnt = workdir / "mnt"
    mnt.mkdir()
    with RegistryServer(workdir / "reg") as server:
        push(layouts, "multi", f"{server.host}/test/multi:v1")
        ref = f"{server.host}/test/multi:v1"
        pulled = run("pull", "--insecure", "--quiet", *cache, ref)
        assert pulled.returncode == 0, pulled.stderr
        digest = pulled.stdout.rsplit("manifest ", 1)[1].strip()
        never_pulled = run("mount", "--insecure", "--pull=never", *cache,
                           f"docker://{server.host}/test/big:v1", str(mnt))
        assert never_pulled.returncode == 1 and "--pull=never" in never_pulled.stderr
    # the registry is gone: nothing listens on its port
    for spec, says in ((f"docker://{ref}", True),
                       (f"docker://{server.host}/test/multi@{digest}", False)):
        started = time.monotonic()
        result = run("mount", "--insecure", *cache, spec, str(mnt))
        try:
            assert result.returncode == 0, result.stderr
            assert time.monotonic() - started < 30
            assert (mnt / "usr" / "share" / "doc" / "only.txt").read_text() == \
                "the only document\n"
        finally:
            force_unmount(mnt)
        lines = [line for line in result.stderr.strip().splitlines()
                 if "no syslog here" not in line]  # where the daemon logs, on such machines
        if says:
            assert len(lines) == 1 and "the registry cannot be reached" in lines[0] \
                and f"using the cached manifest {digest}" in lines[0], result.stderr
        else:
            assert lines == [], result.stderr
    always = run("mount", "--insecure", "--pull=always", *cache, f"docker://{ref}", str(mnt))
    assert always.returncode == 1 and "Connection refused" in always.stderr
    assert not is_mounted(mnt)
