"""Hostile and broken tar layers through ``layerfs mount``: each is refused in one line naming
the layer and the entry, exit 1, no traceback, no mount, nothing half-done in the cache,
nothing written outside it (the canary tree every escape aims at stays as it was)."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
import sys
import zlib

import pytest

from tests.images.tarbuild import d, dev, f, gzipped, hard, layer_tar, sym, zstded

from . import rawtar
from .sandbox import UNPRIVILEGED, Sandbox

UP = "../" * 8  # from the unpack's temporary root far above the sandbox


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_image(box: Sandbox, tars: list[bytes], compress=gzipped) -> None:
    base = layer_tar([d("etc"), f("etc/hostname", b"base\n")])
    all_tars = [base] + tars
    rawtar.oci_layout(box.image, [compress(t) for t in all_tars], [sha(t) for t in all_tars])
    box.seal()


def entries_case(make):
    """A case built from tarbuild entries; ``make(box)`` returns them (paths may name the box)."""
    return lambda box: write_image(box, [layer_tar(make(box))])


def raw_case(make):
    return lambda box: write_image(box, [make(box)])


CANARY_ETC = "{canary}/etc"

CASES = {
    "dotdot": (entries_case(lambda b: [f(UP + "canary/evil", b"x")]),
               r"layer 2 \([0-9a-f]{12}\): entry '(\.\./){8}canary/evil' has a '\.\.' component"),
    "dotdot-inside": (entries_case(lambda b: [d("a"), f("a/../../../canary/evil", b"x")]),
                      r"entry 'a/\.\./\.\./\.\./canary/evil' has a '\.\.' component"),
    "dotdot-pax-path": (raw_case(lambda b: rawtar.pax({b"path": UP.encode() + b"canary/evil"})
                                 + rawtar.member(b"innocent", b"x") + rawtar.end()),
                        r"'\.\.' component"),
    "symlink-then-file": (entries_case(lambda b: [sym("a", str(b.canary / "etc")),
                                                  f("a/passwd", b"pwned")]),
                          r"entry 'a/passwd' lies below the symlink 'a'"),
    "symlink-relative-escape": (entries_case(lambda b: [sym("a", UP + "canary"),
                                                        f("a/evil", b"x")]),
                                r"entry 'a/evil' lies below the symlink 'a'"),
    "symlink-replaces-dir": (entries_case(lambda b: [d("a"), f("a/x", b"1"),
                                                     sym("a", str(b.canary)),
                                                     f("a/evil", b"x")]),
                             r"entry 'a/evil' lies below the symlink 'a'"),
    "symlink-then-dir": (entries_case(lambda b: [sym("a", str(b.canary)), d("a/evil")]),
                         r"entry 'a/evil' lies below the symlink 'a'"),
    "symlink-then-hardlink": (entries_case(lambda b: [sym("a", str(b.canary / "etc")),
                                                      hard("h", "a/passwd")]),
                              r"hard link 'h' -> 'a/passwd': the target is not a file of this"),
    "hardlink-absolute": (entries_case(lambda b: [hard("h", str(b.canary / "keep"))]),
                          r"hard link 'h' -> '.*canary/keep': the target is not a file"),
    "hardlink-dotdot": (entries_case(lambda b: [hard("h", UP + "canary/keep")]),
                        r"hard link 'h' -> '(\.\./){8}canary/keep' has a '\.\.' component"),
    "hardlink-to-later-entry": (entries_case(lambda b: [hard("h", "later"), f("later", b"x")]),
                                r"hard link 'h' -> 'later': the target is not a file"),
    "hardlink-to-dir": (entries_case(lambda b: [d("dir"), hard("h", "dir")]),
                        r"hard link 'h' -> 'dir': the target is not a file"),
    "name-over-name-max": (entries_case(lambda b: [f("d/" + "n" * 256, b"x")]),
                           r"entry 'd/n{40,}\.\.\.\(258 bytes\)\.\.\.n+' has a name of 256 bytes"),
    "path-over-path-max": (entries_case(lambda b: [f("/".join(["p" * 200] * 21), b"x")]),
                           r"has a path of 4220 bytes, too long to store \(PATH_MAX is 4096\)"),
    "nul-in-name": (raw_case(lambda b: rawtar.pax({b"path": b"a\0b"})
                             + rawtar.member(b"a", b"x") + rawtar.end()),
                    r"entry 'a\\x00b' has a NUL byte in its name"),
    "nul-in-symlink": (raw_case(lambda b: rawtar.pax({b"linkpath": b"/etc\0x"})
                                + rawtar.header(b"s", kind=b"2") + rawtar.end()),
                       r"symlink 's' has an impossible target"),
    "bad-xattr-name": (raw_case(lambda b: rawtar.pax({b"SCHILY.xattr.": b"v"})
                                + rawtar.member(b"x", b"") + rawtar.end()),
                       r"entry 'x' has an invalid xattr name"),
    "negative-uid": (raw_case(lambda b: rawtar.pax({b"uid": b"-5"}) + rawtar.member(b"x", b"")
                              + rawtar.end()),
                     r"invalid tar header at offset 1024 \(invalid number in a PAX record\)"),
    "huge-uid": (raw_case(lambda b: rawtar.pax({b"uid": b"%d" % (1 << 40)})
                          + rawtar.member(b"x", b"") + rawtar.end()),
                 r"entry 'x' has an impossible uid \(1099511627776\)"),
    "huge-device-number": (raw_case(lambda b: rawtar.header(b"dev", kind=b"3", devmajor=1 << 40)
                                    + rawtar.end()),
                           r"entry 'dev' has an impossible device major \(1099511627776\)"),
    "root-is-a-file": (entries_case(lambda b: [f("./", b"x")]),
                       r"the root entry '\./' is not a directory"),
    "file-below-file": (entries_case(lambda b: [f("a", b"x"), f("a/b", b"y")]),
                        r"entry 'a/b' lies below 'a', which is not a directory"),
    "huge-pax-header": (raw_case(lambda b: rawtar.header(b"PaxHeader", size=1 << 31, kind=b"x")
                                 + bytes(4096)),
                        r"an extended header of 2147483648 bytes at offset 0"),
    "pax-header-chain": (raw_case(lambda b: b"".join(rawtar.pax({b"comment": b"%d" % i})
                                                     for i in range(50))
                                  + rawtar.member(b"x", b"") + rawtar.end()),
                         r"more than 8 extended headers in a row"),
    "gnu-longname-chain": (raw_case(lambda b: b"".join(
        rawtar.header(b"././@LongLink", size=10, kind=b"L", gnu=True) + rawtar.padded(b"name%06d" % i)
        for i in range(50)) + rawtar.member(b"x", b"") + rawtar.end()),
        r"more than 8 extended headers in a row"),
    "sparse-bomb-pax": (raw_case(lambda b: rawtar.sparse_pax_1_0(b"lastlog", 1 << 42,
                                                                 [(0, b"x" * 512)])
                                 + rawtar.end()),
                        r"entry 'lastlog' \(4398046511104 bytes\) takes the layer over the "
                        r"limit of 256G \(raise it with --max-layer-size"),
    "sparse-bomb-old-gnu": (raw_case(lambda b: rawtar.sparse_old_gnu(b"big", 1 << 42,
                                                                     [(0, b"y" * 512)])
                                     + rawtar.end()),
                            r"entry 'big' \(4398046511104 bytes\) takes the layer over"),
    "sparse-map-bomb": (raw_case(lambda b: rawtar.sparse_old_gnu(b"map", 4096, [(0, b"z" * 512)],
                                                                 extension_blocks=3000)
                                 + rawtar.end()),
                        r"sparse entry 'map' has an oversized map \(more than 2048 extension"),
    "sparse-pax-map-bomb": (raw_case(lambda b: rawtar.pax({
        b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0", b"GNU.sparse.name": b"m",
        b"GNU.sparse.realsize": b"10"}) + rawtar.member(b"m", b"999999999999\n" + bytes(500))
        + rawtar.end()),
        r"sparse entry .* has a map of 999999999999 entries"),
    "corrupt-header-checksum": (raw_case(lambda b: rawtar.member(b"ok", b"x")
                                         + b"garbage!" * 64 + rawtar.end()),
                                r"layer 2 .*invalid tar header at offset 1024"),
    "cut-inside-entry": (raw_case(lambda b: rawtar.header(b"big", size=100000) + b"x" * 600),
                         r"tar data ends inside entry 'big'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_tar_layer_is_refused(sandbox: Sandbox, case: str) -> None:
    build, pattern = CASES[case]
    build(sandbox)
    sandbox.refused(sandbox.mount(), pattern)


def _zeros_gzip(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


UNKNOWN_DIFF_ID = "sha256:" + "0" * 64  # the bound must stop the unpack before any digest check

LIMITED = {
    "many-empty-files": (lambda: gzipped(layer_tar([f(f"f{i}") for i in range(3000)])),
                         {"LAYERFS_MAX_ENTRIES": "1000"},
                         r"layer 2 .*more than 1000 entries \(raise the limit with --max-entries"),
    "big-file": (lambda: gzipped(layer_tar([f("big", b"x" * (3 << 20))])),
                 {"LAYERFS_MAX_LAYER_SIZE": "1M"},
                 r"layer 2 .*more than 1M of uncompressed data \(raise the limit with "
                 r"--max-layer-size or LAYERFS_MAX_LAYER_SIZE\)"),
    "gzip-bomb": (lambda: gzipped(layer_tar([f("a", b"a")])) + _zeros_gzip(256 << 20),
                  {"LAYERFS_MAX_LAYER_SIZE": "16M"},
                  r"layer 2 .*more than 16M of uncompressed data"),
    "zstd-bomb": (lambda: zstded(layer_tar([f("z", bytes(64 << 20))])),
                  {"LAYERFS_MAX_LAYER_SIZE": "8M"}, r"more than 8M of uncompressed data"),
}


@pytest.mark.parametrize("case", list(LIMITED))
@pytest.mark.parametrize("how", ["env", "flag"])
def test_bombs_meet_a_configurable_bound(sandbox: Sandbox, case: str, how: str) -> None:
    make, limits, pattern = LIMITED[case]
    blob = make()
    base = layer_tar([d("etc")])
    rawtar.oci_layout(sandbox.image, [gzipped(base), blob], [sha(base), UNKNOWN_DIFF_ID])
    sandbox.seal()
    if how == "env":
        result = sandbox.mount(env=limits)
    else:
        flags = []
        for key, value in limits.items():
            flags += ["--max-entries" if key.endswith("ENTRIES") else "--max-layer-size", value]
        result = sandbox.mount(*flags)
    sandbox.refused(result, pattern)
    assert len(blob) < 2 << 20  # the bomb is small: the bound, not the disk, stopped it


def test_bad_limit_values_are_usage_errors(sandbox: Sandbox) -> None:
    write_image(sandbox, [layer_tar([f("a", b"a")])])
    result = sandbox.mount("--max-layer-size", "lots")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--max-layer-size lots: expected a size" in result.stderr
    result = sandbox.mount(env={"LAYERFS_MAX_ENTRIES": "-3"})
    assert result.returncode == 2 and "--max-entries -3" in result.stderr
    sandbox.assert_harmless()


STREAMS = {
    "truncated-gzip": (lambda tar: gzipped(tar)[:-200], r"gzip data is truncated"),
    "corrupt-gzip": (lambda tar: _flip(gzipped(tar), 30), r"corrupt gzip data"),
    "gzip-bad-crc": (lambda tar: _flip(gzipped(tar), -6), r"corrupt gzip data"),
    "truncated-zstd": (lambda tar: zstded(tar)[:-100], r"zstd data is truncated"),
    "corrupt-zstd": (lambda tar: _flip(zstded(tar), 4), r"corrupt zstd data"),
    "garbage-after-gzip": (lambda tar: gzipped(tar) + b"trailing junk", r"garbage after the gzip"),
    "wrong-magic": (lambda tar: b"PK\x03\x04" + os.urandom(3000), r"not a valid tar archive"),
    "xz-magic": (lambda tar: b"\xfd7zXZ\x00" + os.urandom(3000), r"not a valid tar archive"),
    "empty-gzip-member": (lambda tar: gzip.compress(b"")[:-4], r"gzip data is truncated"),
}


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    for position in range(at, at + 8) if at >= 0 else range(len(data) + at, len(data) + at + 4):
        out[position] ^= 0x5A
    return bytes(out)


@pytest.mark.parametrize("case", list(STREAMS))
def test_broken_compressed_streams(sandbox: Sandbox, case: str) -> None:
    mangle, pattern = STREAMS[case]
    tar = layer_tar([f(f"file{i}", os.urandom(3000)) for i in range(40)])
    base = layer_tar([d("etc")])
    blob = mangle(tar)
    # No digests to catch it first: the decoder itself must notice.
    rawtar.oci_layout(sandbox.image, [gzipped(base), blob], [sha(base), sha(tar)])
    sandbox.seal()
    line = sandbox.refused(sandbox.mount(), pattern)
    assert "layer 2" in line


# -- accepted, and still harmless ---------------------------------------------------------

UNPACK = """
import io, json, os, sys
sys.path.insert(0, sys.argv[1])
from layerfs.unpack import LayerBlob, LayerCache
from layerfs.sidecar import load_sidecar
data = open(sys.argv[3], "rb").read()
cached = LayerCache(sys.argv[2]).ensure(LayerBlob("L", lambda: io.BytesIO(data)), None)
sidecar = load_sidecar(cached.sidecar_path)
print(json.dumps({"root": str(cached.root), "privileged": cached.info()["privileged"],
                  "stats": {os.fsdecode(k): list(v) for k, v in sidecar.stats.items()}}))
"""


def _unpack(box: Sandbox, tar: bytes, user=None) -> dict:
    import json
    blob = box.root / "layer.tar"
    blob.write_bytes(tar)
    box.seal()
    command = [sys.executable, "-c", UNPACK, str(rawtar.Path(__file__).resolve().parents[2]),
               str(box.cache), str(blob)]
    if user is not None:
        box.give_to(user)
        os.chown(blob, *user)
        command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups",
                   *command]
    result = subprocess.run(command, capture_output=True, text=True, env=box.env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_absolute_names_stay_inside_the_layer(sandbox: Sandbox) -> None:
    target = str(sandbox.canary / "etc" / "passwd")
    tar = layer_tar([f(target, b"pwned"), f("/abs-root-file", b"ok"), sym("/s", "/etc/shadow")])
    out = _unpack(sandbox, tar)
    root = rawtar.Path(out["root"])
    assert (root / target.lstrip("/")).read_bytes() == b"pwned"  # relative to the image root
    assert (root / "abs-root-file").read_bytes() == b"ok"
    assert os.readlink(root / "s") == "/etc/shadow"  # a symlink's target is just its content
    sandbox.assert_outside_untouched()


def test_duplicate_entries_last_one_wins(sandbox: Sandbox) -> None:
    tar = layer_tar([f("a", b"first"), f("a", b"second"),
                     d("d"), f("d/inner", b"gone"), f("d", b"now a file"),
                     f("e", b"file"), d("e"), f("e/x", b"in dir"),
                     f("t", b"target"), hard("h", "t"), f("t", b"replaced"),
                     sym("s", "x"), sym("s", "y"),
                     d("m", mode=0o700), d("m", mode=0o751)])
    out = _unpack(sandbox, tar)
    root = rawtar.Path(out["root"])
    assert (root / "a").read_bytes() == b"second"
    assert (root / "d").read_bytes() == b"now a file"
    assert (root / "e/x").read_bytes() == b"in dir"
    assert (root / "h").read_bytes() == b"target" and (root / "t").read_bytes() == b"replaced"
    assert os.readlink(root / "s") == "y"
    assert stat.S_IMODE(os.lstat(root / "m").st_mode) == 0o751
    sandbox.assert_outside_untouched()


def test_deep_nesting_within_path_max_unpacks_and_is_removed(sandbox: Sandbox) -> None:
    deep = "/".join(["d"] * 1500)  # 2999 bytes, 1500 levels: beyond Python's recursion limit
    tar = layer_tar([f(deep + "/leaf", b"deep")])
    out = _unpack(sandbox, tar)
    assert (rawtar.Path(out["root"]) / deep / "leaf").read_bytes() == b"deep"
    from layerfs.unpack import LayerCache
    from layerfs.unpack.inventory import prune
    report = prune(LayerCache(sandbox.cache), all_layers=True)
    assert len(report.removed) == 1 and os.listdir(sandbox.cache / "layers") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to an unprivileged user with setpriv")
def test_device_nodes_as_a_normal_user_are_recorded_not_created(sandbox: Sandbox) -> None:
    tar = layer_tar([dev("dev/sda", kind=b"4", major=8, minor=0),
                     dev("dev/mem", major=1, minor=1, mode=0o640, gid=15),
                     f("bin/su", b"\x7fELF", mode=0o4755)])
    out = _unpack(sandbox, tar, user=UNPRIVILEGED)
    assert out["privileged"] is False
    root = rawtar.Path(out["root"])
    for name in ("dev/sda", "dev/mem"):
        st = os.lstat(root / name)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_uid == UNPRIVILEGED[0]
    assert out["stats"]["dev/sda"] == [0, 0, stat.S_IFBLK | 0o666, os.makedev(8, 0)]
    assert out["stats"]["dev/mem"] == [0, 15, stat.S_IFCHR | 0o640, os.makedev(1, 1)]
    assert out["stats"]["bin/su"][2] == stat.S_IFREG | 0o4755
    assert not os.lstat(root / "bin/su").st_mode & stat.S_ISUID
    sandbox.assert_outside_untouched()


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to an unprivileged user with setpriv")
def test_refusals_as_a_normal_user(sandbox: Sandbox) -> None:
    write_image(sandbox, [layer_tar([sym("a", str(sandbox.canary)), f("a/evil", b"x")])])
    sandbox.give_to(UNPRIVILEGED)
    sandbox.seal()
    sandbox.refused(sandbox.mount(user=UNPRIVILEGED), r"entry 'a/evil' lies below the symlink")


def test_real_sparse_files_unpack_with_their_holes(sandbox: Sandbox) -> None:
    chunks = [(0, b"a" * 512), (8192, b"b" * 512)]
    expected = b"a" * 512 + bytes(8192 - 512) + b"b" * 512 + bytes(10000 - 8704)
    tar = (rawtar.sparse_pax_1_0(b"pax-sparse", 10000, chunks)
           + rawtar.sparse_old_gnu(b"gnu-sparse", 10000, chunks) + rawtar.end())
    out = _unpack(sandbox, tar)
    root = rawtar.Path(out["root"])
    assert (root / "pax-sparse").read_bytes() == expected
    assert (root / "gnu-sparse").read_bytes() == expected


def test_pax_sparse_formats_0_0_and_0_1(sandbox: Sandbox) -> None:
    chunks = [(0, b"a" * 512), (8192, b"b" * 512)]
    expected = b"a" * 512 + bytes(8192 - 512) + b"b" * 512 + bytes(10000 - 8704)
    stored = b"".join(data for _, data in chunks)
    v01 = rawtar.pax({b"GNU.sparse.map": b"0,512,8192,512", b"GNU.sparse.size": b"10000",
                      b"path": b"v01"}) + rawtar.member(b"v01-stored", stored)
    records = rawtar.pax_records({b"GNU.sparse.size": b"10000", b"path": b"v00"})
    for offset, data in chunks:
        records += rawtar.pax_records({b"GNU.sparse.offset": b"%d" % offset,
                                       b"GNU.sparse.numbytes": b"%d" % len(data)})
    v00 = rawtar.header(b"PaxHeader", size=len(records), kind=b"x") + rawtar.padded(records) \
        + rawtar.member(b"v00-stored", stored)
    out = _unpack(sandbox, v01 + v00 + rawtar.end())
    root = rawtar.Path(out["root"])
    assert (root / "v01").read_bytes() == expected
    assert (root / "v00").read_bytes() == expected
