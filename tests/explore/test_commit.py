"""``layerfs commit``: an upper dir written through a mount becomes a layer and a new image
that shows exactly what the mount showed (mounted by layerfs, and unpacked by umoci)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerfs import treediff
from layerfs.explore.mounts import kernel_overlay_mounted
from layerfs.explore.native import native_layers
from layerfs.images import open_image
from layerfs.index import PathIndex
from layerfs.unpack import LayerCache
from tests.explore.conftest import layerfs_json
from tests.explore.images import have, run, umoci_unpack
from tests.support.mounting import layerfs_mounted, run_layerfs

pytestmark = pytest.mark.usefixtures("needs_root")


def _write_through(root: Path) -> None:
    """Every kind of change a container makes."""
    (root / "newfile").write_text("new\n")
    os.setxattr(root / "newfile", "user.x", b"y")
    os.link(root / "newfile", root / "newlink")
    (root / "etc/hosts").unlink()                      # whiteout
    shutil.rmtree(root / "bin")                        # rm + mkdir: opaque dir
    (root / "bin").mkdir()
    (root / "bin/b").write_text("b\n")
    os.rename(root / "new", root / "new2")             # a merged dir renamed: redirect
    with open(root / "new2/file", "a") as out:         # copy-up below the renamed dir
        out.write("more\n")
    os.chmod(root / "etc/keep", 0o600)                 # metadata-only copy-up
    os.chown(root / "data/only/here", 1000, 1000)
    os.mkfifo(root / "fifo")
    os.symlink("target", root / "sl")
    os.mknod(root / "cdev", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    (root / "odd\xe9").write_text("odd name\n")
    (root / "data/only/here").rename(root / "data/moved")


def _check_equal(expected: dict, actual: dict, what: str) -> None:
    differences = treediff.diff(expected, actual, [p for p in treediff.DEFAULT_PROPERTIES
                                                   if p != "mtime_ns"])
    # A merged dir shows nlink 1 (as the kernel's); the committed copy may be plain.
    differences = [d for d in differences
                   if not (d.property == "nlink" and expected.get(d.path)
                           and expected[d.path].type == "d")]
    assert not differences, f"{what}:\n" + "\n".join(map(str, differences))
    for path, entry in expected.items():  # tar keeps whole seconds
        assert entry.mtime_ns // 10**9 == actual[path].mtime_ns // 10**9, (what, path)


def _commit(upper: Path, layout: Path, tag: str, output: Path, *extra: str) -> dict:
    return layerfs_json("commit", str(upper), "-o", str(output), "--into", str(layout),
                        "--tag", tag, "--base", "v3", "--created-by", "test writes", *extra)


def _verify_new_image(layout: Path, tag: str, expected: dict, cache: Path, work: Path,
                      *, tools: bool = True) -> None:
    (work / f"check-{tag}").mkdir()
    with layerfs_mounted(work / f"check-{tag}", "--cache-dir", str(cache), f"{layout}:{tag}"):
        _check_equal(expected, treediff.snapshot(work / f"check-{tag}"),
                     "layerfs mount of " + tag)
    if not tools:  # umoci 0.4.7 and skopeo 1.9 know no zstd layers
        return
    if have("umoci"):
        rootfs = umoci_unpack(layout, tag, work / f"unpacked-{tag}")
        _check_equal(expected, treediff.snapshot(rootfs), "umoci unpack of " + tag)
    if have("skopeo"):
        run("skopeo", "copy", f"oci:{layout}:{tag}", f"oci:{work / 'copied'}:{tag}")


@pytest.fixture
def layout(umoci_layout: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "layout"
    shutil.copytree(umoci_layout, copy, symlinks=True)
    return copy


def test_layerfs_upper_round_trip(layout: Path, cache_dir: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    mountpoint = tmp_path / "rw"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, "--cache-dir", str(cache_dir), "--upper", str(upper),
                         f"{layout}:v3"):
        _write_through(mountpoint)
        expected = treediff.snapshot(mountpoint)
    assert os.getxattr(upper / "new2", "trusted.overlay.redirect")

    doc = _commit(upper, layout, "v4", tmp_path / "layer.tar.gz", "--cache-dir", str(cache_dir))
    layer = doc["layer"]
    assert layer["compression"] == "gzip" and layer["whiteouts"] == 3
    assert layer["opaque_dirs"] == 2  # bin (re-created), new2 (renamed, written whole)
    assert doc["image"]["tag"] == "v4" and doc["image"]["layers"] == 4

    with tarfile.open(tmp_path / "layer.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["newlink"].islnk() and members["newlink"].linkname == "newfile"
    assert members["newfile"].pax_headers["SCHILY.xattr.user.x"] == "y"
    assert "etc/.wh.hosts" in members and "bin/.wh..wh..opq" in members
    assert "new2/.wh..wh..opq" in members and "new2/big-copy" in members
    assert ".wh.new" in members
    names = list(members)
    assert names == sorted(names, key=lambda n: n.rstrip("/").split("/"))

    config = json.loads(run_layerfs("inspect", f"{layout}:v4", "--json",
                                    "--cache-dir", str(cache_dir)).stdout)
    assert config["layers"][-1]["created_by"] == "test writes"
    assert config["layers"][-1]["diff_id"] == layer["diff_id"]
    _verify_new_image(layout, "v4", expected, cache_dir, tmp_path)


@pytest.mark.usefixtures("needs_kernel_overlay")
def test_kernel_upper_round_trip(layout: Path, cache_dir: Path, tmp_path: Path) -> None:
    image = open_image(f"{layout}:v3", cache=LayerCache(cache_dir), quiet=True)
    lowers = native_layers(PathIndex(image.layers), tmp_path)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with kernel_overlay_mounted(tmp_path / "kernel", lowers, tmp_path / "links",
                                upper=str(upper), work=str(work),
                                options=["redirect_dir=on"]) as merged:
        _write_through(merged)
        expected = treediff.snapshot(merged)
    doc = _commit(upper, layout, "k4", tmp_path / "layer.tar", "--cache-dir", str(cache_dir))
    assert doc["layer"]["compression"] == "none"
    assert doc["layer"]["digest"] == doc["layer"]["diff_id"]
    _verify_new_image(layout, "k4", expected, cache_dir, tmp_path)
    doc = _commit(upper, layout, "z4", tmp_path / "layer.tar.zst", "--cache-dir",
                  str(cache_dir))
    assert doc["layer"]["compression"] == "zstd"
    assert doc["layer"]["media_type"].endswith("+zstd")
    _verify_new_image(layout, "z4", expected, cache_dir, tmp_path, tools=False)


def test_commit_is_deterministic(layout: Path, cache_dir: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "dir").mkdir(parents=True)
    (upper / "dir/b").write_text("b")
    (upper / "a").write_text("a")
    os.mknod(upper / "gone", stat.S_IFCHR, 0)
    os.setxattr(upper / "dir", "trusted.overlay.opaque", b"y")
    first = layerfs_json("commit", str(upper), "-o", str(tmp_path / "one.tar.gz"),
                         "--mtime", "0")
    os.utime(upper / "a", (12345, 12345))
    second = layerfs_json("commit", str(upper), "-o", str(tmp_path / "two.tar.gz"),
                          "--mtime", "0")
    assert first["layer"]["digest"] == second["layer"]["digest"]
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        assert [m.name for m in tar] == [".", ".wh.gone", "a", "dir", "dir/.wh..wh..opq",
                                         "dir/b"]
        assert {m.mtime for m in tar} == {0}


def test_redirect_without_lower_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/old")
    result = run_layerfs("commit", str(upper), "-o", str(tmp_path / "x.tar"))
    assert result.returncode == 1
    assert "renamed directory" in result.stderr and "--lower" in result.stderr
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.partial").exists()


def test_needs_an_output(tmp_path: Path) -> None:
    result = run_layerfs("commit", str(tmp_path))
    assert result.returncode == 2 and "-o FILE" in result.stderr


def test_umoci_accepts_the_image_and_subprocess_is_clean(layout: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "hello").write_text("hello\n")
    layerfs_json("commit", str(upper), "--into", str(layout), "--tag", "hello", "--base",
                 "v3")
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    rootfs = umoci_unpack(layout, "hello", tmp_path / "bundle")
    assert (rootfs / "hello").read_text() == "hello\n"
    assert (rootfs / "new/file").is_file()
    subprocess.run(["umoci", "stat", "--image", f"{layout}:hello"], check=True,
                   capture_output=True)
