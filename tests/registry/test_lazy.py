"""layerfs mount --lazy against a real registry: zstd:chunked layers (made by skopeo) and
uncompressed layers are mounted from their tables of contents, file data fetched by HTTP
range on first open and verified; gzip layers are pulled whole. The mounted tree equals
umoci's unpack of the same image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from ..images.mounting import mounted, snapshot
from .conftest import SCRATCH, run
from .images import unpack_reference
from .servers import FaultProxy, RegistryServer
from .upload import decompressed_copy, upload_dir

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


@pytest.fixture(scope="module")
def lazy_registry(layouts: Path, registry: RegistryServer) -> Iterator[RegistryServer]:
    """test/chunked:v1 (zstd:chunked, by skopeo) and test/plain:v1 (uncompressed layers):
    the three-layer image of ``registry``'s test/multi:v1 (gzip). A registry of their own:
    skopeo would otherwise reuse the gzip blobs instead of pushing zstd:chunked ones."""
    work = Path(tempfile.mkdtemp(prefix="layerfs-registry-lazy-", dir=SCRATCH))
    try:
        with RegistryServer(work) as server:
            plain = decompressed_copy(layouts, "multi", work / "plain")
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            "--dest-compress-format", "zstd:chunked", f"dir:{plain}",
                            f"docker://{server.host}/test/chunked:v1"], check=True,
                           capture_output=True, timeout=300)
            upload_dir(server.host, "test/plain", "v1", plain)
            for repo, media_type in (("test/chunked:v1", "tar+zstd"), ("test/plain:v1", "tar")):
                layers = json.loads(run_skopeo_inspect(server.host, repo))["layers"]
                assert all(layer["mediaType"].endswith(media_type) for layer in layers), repo
            layers = json.loads(run_skopeo_inspect(registry.host, "test/multi:v1"))["layers"]
            assert all(layer["mediaType"].endswith("tar+gzip") for layer in layers)
            yield server
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def expected(layouts: Path) -> Iterator[dict]:
    work = Path(tempfile.mkdtemp(prefix="layerfs-umoci-", dir=SCRATCH))
    try:
        yield snapshot(unpack_reference(layouts, "multi", work / "umoci"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def data_requests(proxy: FaultProxy) -> list:
    return [r for r in proxy.log if "/blobs/" in r.path and r.range]


def full_blob_requests(proxy: FaultProxy, config: str) -> list:
    return [r for r in proxy.log if "/blobs/" in r.path and not r.range
            and not r.path.endswith(config)]


@pytest.mark.parametrize("repo", ["chunked", "plain"])
def test_lazy_mount_fetches_only_what_is_read(lazy_registry, expected, workdir, repo):
    cache = workdir / "cache"
    with FaultProxy(lazy_registry.port) as proxy:
        ref = f"docker://{proxy.host}/test/{repo}:v1"
        with mounted(ref, workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                     str(cache)) as mnt:
            config = [r.path for r in proxy.log if "/blobs/" in r.path and not r.range][0]
            config = config.rsplit("/", 1)[1]
            assert full_blob_requests(proxy, config) == []  # no layer was downloaded
            before = len(data_requests(proxy))
            listing = sorted(os.listdir(mnt / "usr" / "share" / "doc"))
            names = {path for path in walk_names(mnt)}
            assert len(data_requests(proxy)) == before  # listing and stat fetch nothing
            assert listing == ["only.txt"]
            assert names == set(expected)

            assert (mnt / "etc" / "os-release").read_text() == "NAME=layerfs-test\nVERSION=2\n"
            assert len(data_requests(proxy)) == before + 1  # one file, one range request
            (mnt / "etc" / "os-release").read_text()
            assert len(data_requests(proxy)) == before + 1  # fetched once

            assert snapshot(mnt) == expected  # reads every file: all data matches
        assert not (cache / "layers").exists() or not any((cache / "layers").iterdir())
        fetched = list((cache / "lazy").glob("*/fetched.log"))
        assert fetched and any(f.read_text() for f in fetched)

        # a second mount reuses the skeletons and the data fetched before
        proxy.log.clear()
        with mounted(ref, workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                     str(cache)) as mnt:
            assert snapshot(mnt) == expected
        assert data_requests(proxy) == []


def walk_names(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            os.lstat(full)
            yield os.path.relpath(full, root)


def test_lazy_mount_of_gzip_layers_pulls_them_whole(registry, expected, workdir):
    cache = workdir / "cache"
    ref = f"docker://{registry.host}/test/multi:v1"
    with mounted(ref, workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert snapshot(mnt) == expected
    assert len(list((cache / "layers").iterdir())) == 3
    assert not (cache / "lazy").exists() or not any((cache / "lazy").iterdir())


def test_lazy_mount_uses_layers_already_in_the_cache(lazy_registry, expected, workdir):
    cache = workdir / "cache"
    ref = f"{lazy_registry.host}/test/chunked:v1"
    assert run("pull", "--insecure", "--cache-dir", str(cache), ref).returncode == 0
    with mounted(f"docker://{ref}", workdir / "mnt", "--lazy", "--insecure", "--cache-dir",
                 str(cache)) as mnt:
        assert snapshot(mnt) == expected
    assert not (cache / "lazy").exists() or not any((cache / "lazy").iterdir())


def test_wrong_file_data_is_an_io_error_not_wrong_content(lazy_registry, layouts, workdir):
    """The zstd:chunked TOC gives each file's sha256: data that does not match is refused."""
    work = workdir / "own"
    work.mkdir()
    with RegistryServer(work) as server:
        plain = decompressed_copy(layouts, "multi", workdir / "plain")
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        "--dest-compress-format", "zstd:chunked", f"dir:{plain}",
                        f"docker://{server.host}/test/chunked:v1"], check=True,
                       capture_output=True, timeout=300)
        manifest = json.loads(run_skopeo_inspect(server.host, "test/chunked:v1"))
        top = manifest["layers"][2]  # config.ini and only.txt
        blob = server.blob_path(top["digest"])
        data = bytearray(blob.read_bytes())
        # find the zstd frame of "the only document" and flip a byte in it
        import zstandard
        position = _frame_of(data, b"the only document\n", zstandard)
        data[position] ^= 0x01
        blob.write_bytes(bytes(data))
        with mounted(f"docker://{server.host}/test/chunked:v1", workdir / "mnt", "--lazy",
                     "--insecure", "--cache-dir", str(workdir / "cache")) as mnt:
            with pytest.raises(OSError) as failure:
                (mnt / "usr" / "share" / "doc" / "only.txt").read_bytes()
            assert failure.value.errno == 5  # EIO
            assert (mnt / "app" / "config.ini").read_text() == "[app]\nkey = value\n"


def run_skopeo_inspect(host: str, image: str) -> str:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                           f"docker://{host}/{image}"], check=True, capture_output=True,
                          text=True).stdout


def _frame_of(blob: bytearray, content: bytes, zstandard) -> int:  # type: ignore[no-untyped-def]
    """An offset inside the zstd frame whose content is ``content``."""
    magic = b"\x28\xb5\x2f\xfd"
    start = blob.find(magic)
    while start != -1:
        end = blob.find(magic, start + 4)
        try:
            out = zstandard.ZstdDecompressor().decompressobj().decompress(
                bytes(blob[start:end if end != -1 else len(blob)]))
        except zstandard.ZstdError:
            out = b""
        if out == content:
            return (start + (end if end != -1 else len(blob))) // 2
        start = end
    raise AssertionError("frame not found")


# -- eStargz --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def estargz_registry(layouts: Path) -> Iterator[RegistryServer]:
    """test/estargz:v1: the three-layer image with eStargz layers (files over 256 KiB in
    chunks), made by the tests' writer after the eStargz spec."""
    from .estargz import TOC_DIGEST_ANNOTATION, to_estargz
    from .upload import upload_image
    work = Path(tempfile.mkdtemp(prefix="layerfs-registry-estargz-", dir=SCRATCH))
    try:
        with RegistryServer(work) as server:
            plain = decompressed_copy(layouts, "multi", work / "plain")
            manifest = json.loads((plain / "manifest.json").read_text())
            config = json.loads((plain / manifest["config"]["digest"][7:]).read_text())
            layers, diff_ids = [], []
            for layer in manifest["layers"]:
                blob, toc_digest, diff_id = to_estargz((plain / layer["digest"][7:]).read_bytes())
                layers.append((blob, "application/vnd.oci.image.layer.v1.tar+gzip",
                               {TOC_DIGEST_ANNOTATION: toc_digest}))
                diff_ids.append(diff_id)
            config["rootfs"]["diff_ids"] = diff_ids
            upload_image(server.host, "test/estargz", "v1", json.dumps(config).encode(), layers)
            yield server
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_lazy_estargz_equals_a_full_pull(estargz_registry, expected, workdir):
    server = estargz_registry
    with FaultProxy(server.port) as proxy:
        ref = f"docker://{proxy.host}/test/estargz:v1"
        with mounted(ref, workdir / "lazy", "--lazy", "--insecure", "--cache-dir",
                     str(workdir / "c1")) as mnt:
            assert [r for r in proxy.log if "/blobs/sha256" in r.path and not r.range
                    and r.sent > 4096] == []  # no whole layer, only the config
            before = len(data_requests(proxy))
            assert (mnt / "app" / "config.ini").read_text() == "[app]\nkey = value\n"
            assert len(data_requests(proxy)) == before + 1
            big = (mnt / "app" / "data.bin").read_bytes()  # 2 MiB: eight chunks
            assert len(data_requests(proxy)) == before + 1 + 8
            lazy_tree = snapshot(mnt)
        assert hashlib.sha256(big).hexdigest() == expected["app/data.bin"][-1]
    with mounted(f"docker://{server.host}/test/estargz:v1", workdir / "full", "--insecure",
                 "--cache-dir", str(workdir / "c2")) as mnt:
        full_tree = snapshot(mnt)
    assert lazy_tree == full_tree  # stargz.index.json included, as a full pull shows it
    assert {k: v for k, v in lazy_tree.items() if k != "stargz.index.json"} == expected


def test_lazy_estargz_wrong_chunk_is_an_io_error(estargz_registry, layouts, workdir):
    from .estargz import TOC_DIGEST_ANNOTATION, to_estargz
    from .upload import upload_image
    work = workdir / "own"
    work.mkdir()
    with RegistryServer(work) as server:
        plain = decompressed_copy(layouts, "multi", workdir / "plain")
        manifest = json.loads((plain / "manifest.json").read_text())
        tar = (plain / manifest["layers"][1]["digest"][7:]).read_bytes()  # app/data.bin
        blob, toc_digest, diff_id = to_estargz(tar)
        config = {"architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        layer = upload_image(server.host, "test/bad", "v1", json.dumps(config).encode(),
                             [(blob, "application/vnd.oci.image.layer.v1.tar+gzip",
                               {TOC_DIGEST_ANNOTATION: toc_digest})])["layers"][0]
        stored = server.blob_path(layer["digest"])
        data = bytearray(stored.read_bytes())
        data[len(data) // 3] ^= 0x01  # inside a chunk of data.bin
        stored.write_bytes(bytes(data))
        with mounted(f"docker://{server.host}/test/bad:v1", workdir / "mnt", "--lazy",
                     "--insecure", "--cache-dir", str(workdir / "cache")) as mnt:
            with pytest.raises(OSError) as failure:
                (mnt / "app" / "data.bin").read_bytes()
            assert failure.value.errno == 5  # EIO, never wrong data


def test_lazy_skeleton_as_an_unprivileged_unpack_would_write_it(lazy_registry, expected,
                                                                 workdir):
    """Without root the skeleton keeps owners and modes in its sidecar, as an unpacked
    layer does: the index shows them, and the data fetched into it is right."""
    import stat

    from layerfs.index import PathIndex
    from layerfs.registry.lazy.open import open_lazy
    from layerfs.registry.pull import RemoteOptions
    from layerfs.registry.reference import parse_reference
    from layerfs.unpack import LayerCache

    cache = LayerCache(workdir / "cache", privileged=False)
    image = open_lazy(parse_reference(f"{lazy_registry.host}/test/chunked:v1"),
                      RemoteOptions(insecure=True), cache)
    assert all(layer.facts.lazy == "zstd:chunked" for layer in image.layers)
    index = PathIndex(image.layers)
    seen = {}
    for path, node in index.walk():
        if not path:
            continue
        name = os.fsdecode(path)
        kind = stat.S_IFMT(node.mode)
        if stat.S_ISREG(node.mode):
            layer, relpath = index.backing(node)
            layer.ensure_content(relpath)
            detail = hashlib.sha256(Path(os.fsdecode(layer.path_of(relpath))).read_bytes()
                                    ).hexdigest()
            size = node.size
        elif stat.S_ISLNK(node.mode):
            layer, relpath = index.backing(node)
            detail, size = os.fsdecode(os.readlink(layer.path_of(relpath))), 0
        else:
            detail, size = None, 0
        seen[name] = (kind, stat.S_IMODE(node.mode), node.uid, node.gid, size, detail)
    assert seen == expected


def test_a_file_being_fetched_does_not_stall_the_mount(lazy_registry, workdir):
    """A first open waits for its data, in a worker thread: meanwhile other requests of
    the mount (a listing, df, a file already fetched) are answered."""
    import concurrent.futures

    from .test_background import layer_digests
    top = layer_digests(lazy_registry.host, "test/chunked:v1")[-1]  # app/config.ini
    with FaultProxy(lazy_registry.port) as proxy:
        with mounted(f"docker://{proxy.host}/test/chunked:v1", workdir / "mnt", "--lazy",
                     "--insecure", "--cache-dir", str(workdir / "cache")) as mnt:
            assert (mnt / "etc" / "os-release").read_text() == "NAME=layerfs-test\nVERSION=2\n"
            proxy.held.append(top)  # from now on, the top layer's ranges are held
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                held = pool.submit((mnt / "app" / "config.ini").read_text)
                assert proxy_saw(proxy, top)
                others = pool.submit(lambda: (sorted(os.listdir(mnt / "usr" / "share" / "doc")),
                                              os.statvfs(mnt).f_bsize,
                                              (mnt / "etc" / "os-release").read_text()))
                try:
                    listing, bsize, release = others.result(timeout=60)
                    assert not held.done()
                finally:
                    proxy.release.set()
                assert listing == ["only.txt"] and bsize > 0 and "VERSION=2" in release
                assert held.result(timeout=60) == "[app]\nkey = value\n"


def proxy_saw(proxy: FaultProxy, digest: str) -> bool:
    import time
    deadline = time.monotonic() + 60
    while not [r for r in proxy.blob_requests(digest) if r.range and r.status == 0]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
