"""The tar layer unpacker and the chainID-keyed cache, without FUSE."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from layerfs.errors import ImageError
from layerfs.sidecar import load_sidecar
from layerfs.unpack import LayerBlob, LayerCache
from layerfs.unpack.digests import chain_ids

from .tarbuild import d, dev, f, fifo, gzipped, hard, layer_tar, sym, truncated, zstded

ROOT = os.geteuid() == 0


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_of(data: bytes, tar: bytes | None = None, label: str = "L1") -> LayerBlob:
    return LayerBlob(label=label, open=lambda: io.BytesIO(data), blob_digest=sha(data),
                     diff_id=sha(tar if tar is not None else data), size=len(data))


def cache_is_clean(cache: LayerCache) -> bool:
    layers = list(cache.layers_dir.iterdir()) if cache.layers_dir.exists() else []
    tmp = list(cache.tmp_dir.iterdir()) if cache.tmp_dir.exists() else []
    return not layers and not tmp


SAMPLE = [
    d("etc"),
    f("etc/hosts", b"127.0.0.1 localhost\n"),
    f("etc/shadow", b"root:*:\n", mode=0o640, gid=42),
    f("usr/bin/su", b"\x7fELF", mode=0o4755),
    sym("usr/bin/sh", "/bin/dash"),
    hard("usr/bin/su2", "usr/bin/su"),
    fifo("run/fifo"),
    dev("dev/null", major=1, minor=3),
    f("home/user/file", b"mine", uid=1000, gid=1000),
    d("secret", mode=0o000),
    f("caps", b"x", xattrs={"user.comment": b"hello", "security.capability":
                               bytes.fromhex("0100000200200000000000000000000000000000")}),
]


@pytest.mark.parametrize("compress", [gzipped, zstded, lambda x: x], ids=["gzip", "zstd", "plain"])
def test_unpack_compressions(tmp_path: Path, compress) -> None:
    tar = layer_tar(SAMPLE)
    cache = LayerCache(tmp_path / "cache")
    cached = cache.ensure(blob_of(compress(tar), tar), None)
    root = cached.root
    assert (root / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert os.readlink(root / "usr/bin/sh") == "/bin/dash"
    assert os.stat(root / "usr/bin/su").st_ino == os.stat(root / "usr/bin/su2").st_ino
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    assert cached.directory.name == hashlib.sha256(tar).hexdigest()
    info = cached.info()
    assert info["diff_id"] == sha(tar) and info["entries"] == len(SAMPLE)


def test_unprivileged_unpack_records_what_disk_cannot_hold(tmp_path: Path) -> None:
    tar = layer_tar(SAMPLE)
    cache = LayerCache(tmp_path / "cache", privileged=False)
    cached = cache.ensure(blob_of(gzipped(tar), tar), None)
    sidecar = load_sidecar(cached.sidecar_path)
    assert sidecar.owner == (0, 0)
    root = cached.root
    assert stat.S_ISREG(os.lstat(root / "dev/null").st_mode)
    assert sidecar.stats[b"dev/null"] == (0, 0, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert sidecar.stats[b"usr/bin/su"][2] == stat.S_IFREG | 0o4755
    assert sidecar.stats[b"usr/bin/su2"] == sidecar.stats[b"usr/bin/su"]
    assert sidecar.stats[b"etc/shadow"] == (0, 42, stat.S_IFREG | 0o640, 0)
    assert sidecar.stats[b"secret"] == (0, 0, stat.S_IFDIR, 0)
    assert os.lstat(root / "secret").st_mode & 0o700 == 0o700
    assert sidecar.stats[b"home/user/file"][:2] == (1000, 1000)
    assert b"etc/hosts" not in sidecar.stats
    assert b"security.capability" in sidecar.xattrs[b"caps"]
    # Applying the sidecar to the disk's stat gives the image's view.
    shown = sidecar.stat_for(b"dev/null", os.lstat(root / "dev/null"))
    assert stat.S_ISCHR(shown.st_mode) and shown.st_rdev == os.makedev(1, 3)
    assert sidecar.stat_for(b"etc/hosts", os.lstat(root / "etc/hosts")).st_uid == 0
    assert sidecar.implied_dirs >= {b"", b"usr", b"usr/bin", b"run", b"dev", b"home"}
    assert b"etc" not in sidecar.implied_dirs


@pytest.mark.skipif(not ROOT, reason="creating devices and foreign owners needs root")
def test_privileged_unpack_creates_devices_and_owners(tmp_path: Path) -> None:
    tar = layer_tar(SAMPLE)
    cached = LayerCache(tmp_path / "cache", privileged=True).ensure(blob_of(tar), None)
    root = cached.root
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert os.lstat(root / "usr/bin/su").st_mode & 0o7777 == 0o4755
    assert os.lstat(root / "etc/shadow").st_gid == 42
    assert os.lstat(root / "secret").st_mode & 0o7777 == 0
    assert os.getxattr(root / "caps", "user.comment") == b"hello"
    assert load_sidecar(cached.sidecar_path).stats == {}


def test_irregular_tars_are_tolerated(tmp_path: Path) -> None:
    entries = [
        d("./"), d("/"),
        f("./a/b/c", b"deep"),                 # missing parents
        f("d", b"a file"), f("d/.wh.child"),   # whiteout below a file (1.4.4)
        f("x/.wh." + "n" * 255),               # marker name over NAME_MAX (1.4.5)
        f("x/.wh.short"), f("x/.wh..wh..opq"),
        f("last", b"no padding after me"),
    ]
    tar = truncated(layer_tar(entries))
    assert len(tar) % 512 != 0
    cache = LayerCache(tmp_path / "cache", privileged=False)
    cached = cache.ensure(blob_of(gzipped(tar), tar), None)
    root = cached.root
    assert (root / "a/b/c").read_bytes() == b"deep"
    assert (root / "d").read_bytes() == b"a file"
    assert sorted(os.listdir(root / "x")) == [".wh..wh..opq", ".wh.short"]
    assert (root / "last").read_bytes() == b"no padding after me"
    sidecar = load_sidecar(cached.sidecar_path)
    assert sidecar.whiteouts_in(b"x") == {b"n" * 255}
    assert b"" not in sidecar.implied_dirs and b"a/b" in sidecar.implied_dirs
    assert cached.info()["diff_id"] == sha(tar)


def test_bytes_names_and_replaced_entries(tmp_path: Path) -> None:
    odd = b"caf\xe9\xff name\nwith:newline"
    entries = [f(odd, b"odd"), f(b"p", b"file first"), d(b"p"), f(b"p/in", b"now a dir"),
               d(b"q", mode=0o700), d(b"q", mode=0o750)]
    tar = layer_tar(entries)
    cached = LayerCache(tmp_path / "c", privileged=False).ensure(blob_of(tar), None)
    root = os.fsencode(cached.root)
    assert open(root + b"/" + odd, "rb").read() == b"odd"
    assert open(root + b"/p/in", "rb").read() == b"now a dir"
    sidecar = load_sidecar(cached.sidecar_path)
    assert sidecar.stat_for(b"q", os.lstat(root + b"/q")).st_mode & 0o777 == 0o750


@pytest.mark.parametrize("entries, message", [
    ([f("../evil", b"x")], "'../evil' has a '..' component"),
    ([f("a/../../evil", b"x")], "'..' component"),
    ([sym("link", "/etc"), f("link/passwd", b"x")], "below the symlink 'link'"),
    ([sym("link", "../../.."), f("link/x", b"x")], "below the symlink 'link'"),
    ([hard("h", "../../etc/passwd")], "'..' component"),
    ([hard("h", "/etc/passwd")], "hard link 'h' -> 'etc/passwd'"),
])
def test_unsafe_entries_are_refused_and_leave_nothing(tmp_path: Path, entries, message) -> None:
    tar = layer_tar(entries)
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(ImageError, match=message):
        cache.ensure(blob_of(tar), None)
    assert cache_is_clean(cache)
    assert not (tmp_path / "evil").exists()


def test_digest_mismatches_name_layer_and_both_digests(tmp_path: Path) -> None:
    tar = layer_tar([f("a", b"a")])
    blob = gzipped(tar)
    cache = LayerCache(tmp_path / "cache")
    wrong = "sha256:" + "0" * 64
    bad_blob = LayerBlob("L7", lambda: io.BytesIO(blob), blob_digest=wrong, diff_id=sha(tar))
    with pytest.raises(ImageError, match=f"layer L7: blob digest mismatch.*{wrong}.*{sha(blob)}"):
        cache.ensure(bad_blob, None)
    bad_diff = LayerBlob("L8", lambda: io.BytesIO(blob), blob_digest=sha(blob), diff_id=wrong)
    with pytest.raises(ImageError, match=f"layer L8: DiffID mismatch.*{wrong}.*{sha(tar)}"):
        cache.ensure(bad_diff, None)
    assert cache_is_clean(cache)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:len(b) // 2], "gzip data is truncated"),
    (lambda b: b[:20] + bytes(x ^ 0xFF for x in b[20:60]) + b[60:], "corrupt gzip data"),
    (lambda b: b + b"garbage", "garbage after the gzip data"),
])
def test_corrupt_gzip(tmp_path: Path, mangle, message) -> None:
    tar = layer_tar([f("a", os.urandom(4096))])
    data = mangle(gzipped(tar))
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(ImageError, match=message):
        cache.ensure(LayerBlob("L1", lambda: io.BytesIO(data), diff_id=sha(tar)), None)
    assert cache_is_clean(cache)


def test_tar_cut_inside_an_entry_is_refused(tmp_path: Path) -> None:
    tar = layer_tar([f("big", b"x" * 5000)])[:1500]
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(ImageError, match="tar data ends inside entry 'big'"):
        cache.ensure(LayerBlob("L1", lambda: io.BytesIO(tar)), None)
    assert cache_is_clean(cache)


def test_empty_blobs_are_empty_layers(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    zero = cache.ensure(LayerBlob("zero", lambda: io.BytesIO(b"")), None)
    assert os.listdir(zero.root) == [] and zero.chain_id == sha(b"")
    empty_tar = bytes(10240)
    layer = cache.ensure(blob_of(empty_tar), None)
    assert os.listdir(layer.root) == []


def test_missing_blob(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    missing = tmp_path / "nope"
    with pytest.raises(ImageError, match="layer L3: blob is missing"):
        cache.ensure(LayerBlob("L3", lambda: open(missing, "rb"), diff_id=sha(b"")), None)
    assert cache_is_clean(cache)


def test_present_layer_is_reused_without_reading_the_blob(tmp_path: Path) -> None:
    tars = [layer_tar([f("a", b"1")]), layer_tar([f("b", b"2")])]
    cache = LayerCache(tmp_path / "cache")
    first = cache.ensure(blob_of(tars[0]), None)
    second = cache.ensure(blob_of(tars[1]), first.chain_id)
    assert second.chain_id == chain_ids([sha(tars[0]), sha(tars[1])])[1]

    def must_not_open():
        raise AssertionError("blob read although the layer is cached")

    again = cache.ensure(LayerBlob("L2", must_not_open, diff_id=sha(tars[1])), first.chain_id)
    assert again.directory == second.directory


def test_same_diff_on_another_base_is_another_layer(tmp_path: Path) -> None:
    tar = layer_tar([f("x", b"x")])
    base_a, base_b = layer_tar([f("a", b"a")]), layer_tar([f("b", b"b")])
    cache = LayerCache(tmp_path / "cache")
    on_a = cache.ensure(blob_of(tar), cache.ensure(blob_of(base_a), None).chain_id)
    on_b = cache.ensure(blob_of(tar), cache.ensure(blob_of(base_b), None).chain_id)
    assert on_a.directory != on_b.directory


CONCURRENT = """
import io, sys
from layerfs.unpack import LayerBlob, LayerCache
data = open(sys.argv[2], "rb").read()
cached = LayerCache(sys.argv[1]).ensure(
    LayerBlob("L", lambda: io.BytesIO(data), diff_id=sys.argv[3]), None)
print(cached.directory)
"""


def test_concurrent_unpacks_of_one_layer(tmp_path: Path) -> None:
    tar = layer_tar([f(f"f{i}", os.urandom(2048)) for i in range(300)])
    (tmp_path / "blob").write_bytes(gzipped(tar))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path / "cache"),
                               str(tmp_path / "blob"), sha(tar)], stdout=subprocess.PIPE,
                              env=env, text=True) for _ in range(3)]
    outputs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1
    assert len(os.listdir(tmp_path / "cache/layers")) == 1
    assert os.listdir(tmp_path / "cache/tmp") == []


def test_killed_unpack_leaves_nothing_trusted(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    cache.ensure(blob_of(layer_tar([f("a", b"a")])), None)
    leftover = cache.tmp_dir / "999999.deadbeef"
    (leftover / "root").mkdir(parents=True)
    assert cache.remove_stale_tmp() == 1
    assert not leftover.exists()


def test_pax_xattr_values_round_trip_as_bytes(tmp_path: Path) -> None:
    value = b"\x00\xff\xfe binary"
    tar = layer_tar([f("x", b"", xattrs={"user.bin": value})])
    members = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()
    assert members
    cached = LayerCache(tmp_path / "c", privileged=False).ensure(blob_of(tar), None)
    try:
        got = os.getxattr(cached.root / "x", "user.bin")
    except OSError:
        got = load_sidecar(cached.sidecar_path).xattrs[b"x"][b"user.bin"]
    assert got == value


def test_corrupt_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    tar = bytearray(layer_tar([f("a", b"a" * 100), f("b", b"b" * 100)]))
    second_header = 1024
    assert tar[second_header:second_header + 1] == b"b"
    tar[second_header + 148:second_header + 156] = b"garbage!"  # its checksum
    data = bytes(tar)
    cache = LayerCache(tmp_path / "cache")
    with pytest.raises(ImageError, match="invalid tar header at offset 1024"):
        cache.ensure(LayerBlob("L1", lambda: io.BytesIO(data)), None)
    assert cache_is_clean(cache)


KILLED_UNPACK = """
import io, sys
from layerfs.unpack import LayerBlob, LayerCache
LayerCache(sys.argv[1]).ensure(LayerBlob("L", lambda: open(sys.argv[2], "rb")), None)
"""


def test_kill_9_during_unpack_leaves_no_layer(tmp_path: Path) -> None:
    import time

    tar = layer_tar([f(f"d{i // 100}/f{i}", os.urandom(16384)) for i in range(4000)])
    (tmp_path / "blob").write_bytes(gzipped(tar))
    cache_dir = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-c", KILLED_UNPACK, str(cache_dir),
                                str(tmp_path / "blob")], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            started = list((cache_dir / "tmp").glob("*/root/d1")) if (cache_dir / "tmp").exists() \
                else []
            if started:
                break
            time.sleep(0.01)
        if process.poll() is not None:
            pytest.skip("the unpack finished before it could be killed")
        process.kill()
    finally:
        process.wait(timeout=30)
    cache = LayerCache(cache_dir)
    assert os.listdir(cache.layers_dir) == []  # nothing a later mount would trust
    assert os.listdir(cache.tmp_dir)  # the dead unpack's leftovers ...
    cached = cache.ensure(blob_of(gzipped(tar), tar), None)  # ... go with the next unpack
    assert (cached.root / "d39/f3999").stat().st_size == 16384
    assert os.listdir(cache.tmp_dir) == []
