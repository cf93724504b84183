"""Failure injection against a real registry: a 5xx on the first try, the registry
stopped mid-download (and restarted), a pull killed mid-download, a blob served with
the wrong content, and 403/404 answers. A partial download is resumed with an HTTP
range, never trusted: the whole blob is verified."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..images.mounting import mounted
from .conftest import BIG_SIZE, layerfs_env, run, start
from .images import manifest_of
from .servers import Fault, FaultProxy, sha256_file

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")
WAIT = 120.0


def partial_of(cache: Path, digest: str) -> Path:
    return cache / "downloads" / f"sha256-{digest.partition(':')[2]}.partial"


def wait_until(condition, what: str, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not after {timeout}s")


def big_digest(layouts: Path) -> str:
    return manifest_of(layouts, "big")["layers"][0]["digest"]


def check_big_image(cache: Path, ref: str, workdir: Path, expected_sha: str) -> None:
    with mounted(f"docker://{ref}", workdir / "mnt", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert (mnt / "big" / "random.bin").stat().st_size == BIG_SIZE
        assert sha256_file(mnt / "big" / "random.bin") == expected_sha


@pytest.fixture
def big_sha(layouts: Path, workdir: Path) -> str:
    from .images import unpack_reference
    root = unpack_reference(layouts, "big", workdir / "umoci")
    return sha256_file(root / "big" / "random.bin")


def test_5xx_on_first_try_is_retried(registry, layouts, workdir):
    layer = manifest_of(layouts, "multi")["layers"][1]["digest"]
    config = manifest_of(layouts, "multi")["config"]["digest"]
    faults = [Fault("/manifests/v1", 500), Fault(f"/blobs/{layer}", 500),
              Fault(f"/blobs/{config}", 503)]
    with FaultProxy(registry.port, faults=faults) as proxy:
        result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"),
                     f"{proxy.host}/test/multi:v1")
        assert result.returncode == 0, result.stderr
        assert all(fault.times == 0 for fault in faults)
        assert [r.status for r in proxy.blob_requests(layer)] == [500, 200]
        assert [r.status for r in proxy.log if "/manifests/" in r.path][:2] == [500, 200]


def test_5xx_every_time_gives_up_naming_the_reference(registry, workdir):
    with FaultProxy(registry.port, faults=[Fault("/manifests/v1", 502, times=10)]) as proxy:
        ref = f"{proxy.host}/test/multi:v1"
        result = run("pull", "--insecure", "--retries", "2", "--cache-dir",
                     str(workdir / "cache"), ref)
        assert result.returncode == 1
        assert f"{ref}: manifest v1: 502" in result.stderr
        assert "gave up after 3 attempts" in result.stderr
        assert len([r for r in proxy.log if "/manifests/" in r.path]) == 3


def test_registry_stopped_mid_download_resumes_with_a_range(fresh_registry, layouts,
                                                            workdir, big_sha):
    cache = workdir / "cache"
    digest = big_digest(layouts)
    with FaultProxy(fresh_registry.port, rate=4 << 20) as proxy:
        ref = f"{proxy.host}/test/big:v1"
        puller = start("pull", "--insecure", "--retries", "0", "--cache-dir", str(cache), ref)
        try:
            wait_until(lambda: partial_of(cache, digest).exists()
                       and partial_of(cache, digest).stat().st_size > 4 << 20,
                       "download under way")
            fresh_registry.stop()
            _, stderr = puller.communicate(timeout=WAIT)
        finally:
            if puller.poll() is None:
                puller.kill()
                puller.communicate()
        assert puller.returncode == 1
        assert f"{ref}: layer 1 ({digest})" in stderr
        assert "pull again to resume" in stderr
        kept = partial_of(cache, digest).stat().st_size
        assert 0 < kept < BIG_SIZE
        assert not (cache / "layers").exists() or not any((cache / "layers").iterdir())

        fresh_registry.start()
        proxy.rate = None
        proxy.log.clear()
        result = run("pull", "--insecure", "--cache-dir", str(cache), ref)
        assert result.returncode == 0, result.stderr
        assert [r.range for r in proxy.blob_requests(digest)] == [f"bytes={kept}-"]
        assert proxy.blob_requests(digest)[0].sent == os.path.getsize(
            fresh_registry.blob_path(digest)) - kept
        assert not partial_of(cache, digest).exists()
        check_big_image(cache, ref, workdir, big_sha)


def test_registry_restarted_within_the_retries_is_resumed_by_the_same_pull(
        fresh_registry, layouts, workdir, big_sha):
    cache = workdir / "cache"
    digest = big_digest(layouts)
    with FaultProxy(fresh_registry.port, rate=4 << 20) as proxy:
        ref = f"{proxy.host}/test/big:v1"
        puller = start("pull", "--insecure", "--retries", "6", "--cache-dir", str(cache), ref)
        try:
            wait_until(lambda: partial_of(cache, digest).exists()
                       and partial_of(cache, digest).stat().st_size > 4 << 20,
                       "download under way")
            fresh_registry.stop()
            wait_until(lambda: len(proxy.blob_requests(digest)) >= 2, "a retry")
            proxy.rate = None
            fresh_registry.start()
            stdout, stderr = puller.communicate(timeout=WAIT)
        finally:
            if puller.poll() is None:
                puller.kill()
                puller.communicate()
        assert puller.returncode == 0, stderr
        ranges = [r.range for r in proxy.blob_requests(digest)]
        assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])
        assert int(ranges[-1][6:-1]) > 4 << 20  # resumed, not restarted
        check_big_image(cache, ref, workdir, big_sha)


def test_killed_pull_resumes_and_leaves_no_partial_layer(fresh_registry, layouts, workdir,
                                                         big_sha):
    cache = workdir / "cache"
    digest = big_digest(layouts)
    with FaultProxy(fresh_registry.port, rate=4 << 20) as proxy:
        ref = f"{proxy.host}/test/big:v1"
        puller = start("pull", "--insecure", "--cache-dir", str(cache), ref)
        try:
            wait_until(lambda: partial_of(cache, digest).exists()
                       and partial_of(cache, digest).stat().st_size > 4 << 20,
                       "download under way")
            puller.send_signal(signal.SIGKILL)
            puller.communicate(timeout=WAIT)
        finally:
            if puller.poll() is None:
                puller.kill()
                puller.communicate()
        kept = partial_of(cache, digest).stat().st_size
        assert not (cache / "layers").exists() or not any((cache / "layers").iterdir())
        proxy.rate = None
        proxy.log.clear()
        result = run("pull", "--insecure", "--cache-dir", str(cache), ref)
        assert result.returncode == 0, result.stderr
        ranges = [r.range for r in proxy.blob_requests(digest)]
        assert len(ranges) == 1 and int(ranges[0][6:-1]) >= kept
        assert not any((cache / "tmp").iterdir())  # the killed unpack was cleared
        check_big_image(cache, ref, workdir, big_sha)


def test_blob_with_wrong_content_is_rejected(fresh_registry, layouts, workdir):
    cache = workdir / "cache"
    manifest = manifest_of(layouts, "multi")
    digest = manifest["layers"][1]["digest"]
    blob = fresh_registry.blob_path(digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    blob.write_bytes(bytes(data))
    ref = f"{fresh_registry.host}/test/multi:v1"
    result = run("pull", "--insecure", "--cache-dir", str(cache), ref)
    assert result.returncode == 1
    assert f"{ref}: layer 2 ({digest})" in result.stderr or \
        f"layer 2 ({digest.partition(':')[2][:12]})" in result.stderr
    assert "digest mismatch" in result.stderr
    assert digest in result.stderr
    assert not partial_of(cache, digest).exists()
    diff_id_hex = {p.name for p in (cache / "layers").iterdir()} if (cache / "layers").exists() \
        else set()
    assert len(diff_id_hex) < 3  # the tampered layer (and so its chain) is not in the cache
    assert not any((cache / "tmp").iterdir())
    # and nothing gets mounted
    with pytest.raises(RuntimeError, match="digest mismatch"):
        with mounted(f"docker://{ref}", workdir / "mnt", "--insecure", "--cache-dir",
                     str(cache)):
            pass


def test_unknown_tag_and_repository_are_404_naming_the_reference(registry, workdir):
    cache = str(workdir / "cache")
    tag = run("pull", "--insecure", "--cache-dir", cache, f"{registry.host}/test/multi:nope")
    assert tag.returncode == 1
    assert f"{registry.host}/test/multi:nope: manifest nope: not found (404" in tag.stderr
    repo = run("pull", "--insecure", "--cache-dir", cache, f"{registry.host}/no/such:v1")
    assert repo.returncode == 1
    assert f"{registry.host}/no/such:v1: manifest v1: not found (404" in repo.stderr
    mount = run("mount", "--insecure", "--cache-dir", cache,
                f"docker://{registry.host}/test/multi:nope", str(workdir))
    assert mount.returncode == 1
    assert "not found (404" in mount.stderr


def test_403_is_access_denied_naming_the_reference(registry, workdir):
    with FaultProxy(registry.port, faults=[Fault("/manifests/v1", 403)]) as proxy:
        ref = f"{proxy.host}/test/multi:v1"
        result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"), ref)
        assert result.returncode == 1
        assert f"{ref}: manifest v1: access denied (403" in result.stderr


def test_bad_reference_is_a_usage_error():
    result = run("pull", "127.0.0.1:5000/Bad_Name:v1")
    assert result.returncode == 2
    assert "not a valid repository name component" in result.stderr


def test_plain_http_registry_needs_insecure(registry, workdir):
    ref = f"{registry.host}/test/multi:v1"
    result = run("pull", "--cache-dir", str(workdir / "cache"), ref)
    assert result.returncode == 1
    assert f"{ref}: manifest v1: TLS handshake with {registry.host} failed" in result.stderr
    assert "--insecure" in result.stderr


def test_nothing_listening_fails_at_once_naming_the_reference(workdir):
    """A refused connection is not retried (six retries took 18 s): nothing listens."""
    from .servers import free_port
    port = free_port()
    ref = f"127.0.0.1:{port}/test/multi:v1"
    started = time.monotonic()
    result = run("pull", "--insecure", "--cache-dir", str(workdir / "c"), ref)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.strip() == \
        f"layerfs: {ref}: manifest v1: 127.0.0.1:{port}: Connection refused", result.stderr
    # One attempt, no backoff (six retries took 18 s); the bound leaves room for a loaded
    # machine's interpreter start.
    assert elapsed < 15, f"{elapsed:.1f} s to report a refused connection"


def test_retries_are_shown_on_a_terminal(registry, workdir):
    """stderr a terminal: each retry is one line saying when the next attempt comes."""
    from tests.support.terminal import run_on_terminal

    faults = [Fault("/manifests/v1", 503, times=2)]
    with FaultProxy(registry.port, faults=faults) as proxy:
        ref = f"{proxy.host}/test/multi:v1"
        returncode, _, shown = run_on_terminal(
            [sys.executable, "-m", "layerfs", "pull", "--insecure", "--quiet",
             "--cache-dir", str(workdir / "cache"), ref], env=layerfs_env(None))
    assert returncode == 0, shown
    lines = [line for line in shown.decode().splitlines() if "retrying in" in line]
    assert len(lines) == 2, shown
    assert f"{ref}: manifest v1: 503" in lines[0] and "(retry 1 of 5)" in lines[0]


def test_tls_registry_verified_unless_insecure(layouts, workdir):
    from .servers import RegistryServer
    (workdir / "reg").mkdir()
    with RegistryServer(workdir / "reg", tls=True) as server:
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layouts}:multi",
                        f"docker://{server.host}/test/multi:v1"], check=True,
                       capture_output=True, timeout=300)
        ref = f"{server.host}/test/multi:v1"
        untrusted = run("pull", "--cache-dir", str(workdir / "c1"), ref)
        assert untrusted.returncode == 1
        assert f"{ref}: manifest v1: TLS certificate of {server.host} not trusted" \
            in untrusted.stderr
        assert run("pull", "--insecure", "--cache-dir", str(workdir / "c2"), ref).returncode == 0
        trusted = run("pull", "--cache-dir", str(workdir / "c3"), ref,
                      env={"SSL_CERT_FILE": str(server.certificate)})
        assert trusted.returncode == 0, trusted.stderr
