"""Broken or hostile images: each fails with one clear line, exit 1, and leaves nothing
in the cache (no layer, no temporary directory)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from .mounting import run_layerfs
from .tarbuild import d, f, hard, layer_tar, sym, write_oci_layout

GOOD = [layer_tar([d("etc"), f("etc/hosts", b"hosts\n")]),
        layer_tar([f("etc/passwd", b"root:x:0:0\n")])]


def _layer_blobs(layout: Path) -> list[Path]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" /
                           index["manifests"][0]["digest"].split(":")[1]).read_text())
    return [layout / "blobs/sha256" / layer["digest"].split(":")[1]
            for layer in manifest["layers"]]


def _manifest_blob(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    return layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]


def _corrupt_gzip(layout: Path) -> None:
    blob = _layer_blobs(layout)[1]
    data = bytearray(blob.read_bytes())
    data[20:40] = bytes(b ^ 0xFF for b in data[20:40])
    blob.write_bytes(bytes(data))


def _digest_mismatch(layout: Path) -> None:
    blobs = _layer_blobs(layout)
    shutil.copyfile(blobs[0], blobs[1])


def _missing_blob(layout: Path) -> None:
    _layer_blobs(layout)[1].unlink()


def _truncated_manifest(layout: Path) -> None:
    blob = _manifest_blob(layout)
    blob.write_bytes(blob.read_bytes()[:40])


def _hostile(entries):
    def make(layout: Path) -> None:
        shutil.rmtree(layout)
        write_oci_layout(layout, {"latest": [GOOD[0], layer_tar(entries)]})
    return make


CASES = {
    "corrupt-gzip": (_corrupt_gzip, "layer 2 .*corrupt gzip data"),
    "digest-mismatch": (_digest_mismatch, "layer 2 .*blob digest mismatch: the manifest says "
                                          "sha256:[0-9a-f]{64}, the blob is sha256:[0-9a-f]{64}"),
    "missing-blob": (_missing_blob, "layer 2 .*blob is missing"),
    "truncated-manifest": (_truncated_manifest, "manifest blob sha256:[0-9a-f]{64}: digest mismatch"),
    "path-traversal": (_hostile([f("../../escaped", b"x")]),
                       "entry '../../escaped' has a '..' component"),
    "symlink-escape": (_hostile([sym("etc", "/tmp"), f("etc/escaped", b"x")]),
                       "entry 'etc/escaped' lies below the symlink 'etc'"),
    "hardlink-escape": (_hostile([f("ok", b""), hard("h", "/etc/shadow")]),
                        "hard link 'h' -> 'etc/shadow': the target is not a file of this layer"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["mount", "inspect"])
def test_bad_image_fails_cleanly(tmp_path: Path, case: str, command: str) -> None:
    damage, message = CASES[case]
    layout = tmp_path / "layout"
    write_oci_layout(layout, {"latest": GOOD})
    damage(layout)
    cache = tmp_path / "cache"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if command == "mount":
        result = run_layerfs("mount", "--cache-dir", str(cache), str(layout), str(mountpoint))
    else:
        result = run_layerfs("inspect", str(layout))
        if case in ("path-traversal", "symlink-escape", "hardlink-escape"):
            assert result.returncode == 0  # inspect reads, never writes entries
            return
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("layerfs: ")
    assert re.search(message, result.stderr), result.stderr
    assert not os.path.ismount(mountpoint)
    for sub in ("layers", "tmp"):
        assert not (cache / sub).exists() or os.listdir(cache / sub) == [], sub
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped").exists()


def test_unknown_tag_lists_tags(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, {"v1": GOOD[:1], "v2": GOOD})
    result = run_layerfs("inspect", f"{layout}:v3")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "no image 'v3'; available: v1; v2" in result.stderr
    result = run_layerfs("inspect", str(layout))
    assert "holds 2 images" in result.stderr


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not an image at all")
    result = run_layerfs("inspect", str(tmp_path / "junk"))
    assert result.returncode == 1 and "not a readable image archive" in result.stderr
    result = run_layerfs("inspect", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "no such image" in result.stderr
