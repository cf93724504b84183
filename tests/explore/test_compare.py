"""``layerfs compare``: zero differences against the kernel overlay on images in every
encoding, and every kind of planted difference found against a directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.explore.conftest import layerfs_json
from tests.explore.images import Dir, File, Special, Symlink, layer_dirs_image
from tests.support.layerspec import Hardlink
from tests.support.mounting import run_layerfs

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/fixtures/real")


def _no_mounts_left(under: Path) -> None:
    with open("/proc/self/mounts") as mounts:
        assert str(under) not in mounts.read()


@pytest.mark.usefixtures("needs_kernel_overlay")
@pytest.mark.parametrize("form", ["oci", "native"])
def test_stack_equals_kernel(tmp_path: Path, form: str) -> None:
    image = layer_dirs_image(tmp_path / form, form=form)
    doc = layerfs_json("compare", str(image), "--tmp-dir", str(tmp_path))
    assert doc["identical"], doc["differences"]
    assert doc["entries"]["layerfs"] == doc["entries"]["reference"] > 10
    _no_mounts_left(tmp_path)


@pytest.mark.usefixtures("needs_kernel_overlay")
@pytest.mark.parametrize("tag", ["v1", "v3"])
def test_umoci_image_equals_kernel(umoci_layout: Path, cache_dir: Path, tmp_path: Path,
                                   tag: str) -> None:
    result = run_layerfs("compare", f"{umoci_layout}:{tag}", "--cache-dir", str(cache_dir),
                         "--tmp-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("identical:")
    _no_mounts_left(tmp_path)


@pytest.mark.usefixtures("needs_kernel_overlay")
@pytest.mark.parametrize("archive", ["whiteout_dir.tar", "whiteout_image.tar",
                                     "hello-world-v25.tar"])
def test_real_archives_equal_kernel(archive: str, cache_dir: Path, tmp_path: Path) -> None:
    doc = layerfs_json("compare", str(REAL / archive), "--cache-dir", str(cache_dir),
                       "--tmp-dir", str(tmp_path))
    assert doc["identical"], doc["differences"]


def _one_layer() -> dict:
    return {
        b"t": Dir(),
        b"t/type": File(b"a file"), b"t/mode": File(b"m"), b"t/owner": File(b"o"),
        b"t/size": File(b"s"), b"t/mtime": File(b"t"), b"t/content": File(b"same size"),
        b"t/xattr": File(b"x"), b"t/link": Symlink(b"target"), b"t/pair1": File(b"pair"),
        b"t/pair2": Hardlink(b"t/pair1"), b"t/gone": File(b"bye"),
        b"dev/blk": Special("blk", os.makedev(8, 0), 0o660),
        b"dev/fifo": Special("fifo"),
    }


def _plant(root: Path) -> set[tuple[str, str]]:
    """Change one property of one entry for each kind; returns the (path, property) set."""
    dir_times = {p: os.lstat(p).st_mtime_ns for p in (root / "t", root / "dev")}
    (root / "t/type").unlink()
    (root / "t/type").mkdir()
    os.chmod(root / "t/mode", 0o600)
    os.chown(root / "t/owner", 1234, 5678)
    st = os.lstat(root / "t/size")
    with open(root / "t/size", "ab") as out:
        out.write(b"more")
    os.utime(root / "t/size", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(root / "t/mtime", ns=(1, 1))
    st = os.lstat(root / "t/content")
    (root / "t/content").write_bytes(b"SAME SIZE")
    os.utime(root / "t/content", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.setxattr(root / "t/xattr", "user.planted", b"yes")
    st = os.lstat(root / "t/link")
    (root / "t/link").unlink()
    os.symlink("TARGET", root / "t/link")
    os.utime(root / "t/link", ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    (root / "t/pair2").unlink()
    (root / "t/gone").unlink()
    (root / "t/extra").write_text("new")
    st = os.lstat(root / "dev/blk")
    (root / "dev/blk").unlink()
    os.mknod(root / "dev/blk", 0o660 | 0o060000, os.makedev(8, 1))
    os.utime(root / "dev/blk", ns=(st.st_atime_ns, st.st_mtime_ns))
    for path, mtime in dir_times.items():
        os.utime(path, ns=(mtime, mtime))
    return {("/t/type", "type"), ("/t/mode", "mode"), ("/t/owner", "uid"),
            ("/t/owner", "gid"), ("/t/size", "size"), ("/t/size", "content"),
            ("/t/mtime", "mtime_ns"), ("/t/content", "content"), ("/t/xattr", "xattrs"),
            ("/t/link", "target"), ("/t/pair1", "nlink"), ("/t/pair1", "links"),
            ("/t/pair2", "presence"), ("/t/gone", "presence"), ("/t/extra", "presence"),
            ("/dev/blk", "rdev")}


@pytest.mark.usefixtures("needs_root")
def test_every_planted_difference_is_found(tmp_path: Path) -> None:
    image = layer_dirs_image(tmp_path / "img", form="native", layers=[_one_layer()])
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(image / "l0"), str(reference)], check=True)
    baseline = layerfs_json("compare", str(image), "--against", str(reference),
                            "--tmp-dir", str(tmp_path))
    assert baseline["identical"], baseline["differences"]

    planted = _plant(reference)
    result = run_layerfs("compare", str(image), "--against", str(reference), "--json",
                         "--tmp-dir", str(tmp_path))
    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout)
    found = {(d["path"], d["property"]) for d in doc["differences"]}
    # A file turned into a dir differs in more than its type, and adds a link to /t.
    consequences = {("/t/type", p) for p in ("size", "nlink", "mtime_ns", "mode", "content")}
    assert found - consequences - {("/t", "nlink")} == planted
    by_key = {(d["path"], d["property"]): d for d in doc["differences"]}
    assert by_key[("/t/gone", "presence")]["reference"] is None
    assert by_key[("/t/extra", "presence")]["layerfs"] is None
    assert by_key[("/t/link", "target")] == {"path": "/t/link", "property": "target",
                                             "layerfs": "target", "reference": "TARGET"}
    assert by_key[("/t/xattr", "xattrs")]["reference"] == {"user.planted": "yes"}
    assert not doc["identical"] and doc["summary"]["presence"] == 3

    text = run_layerfs("compare", str(image), "--against", str(reference),
                       "--tmp-dir", str(tmp_path))
    assert text.returncode == 3
    assert "/t/gone: only in layerfs" in text.stdout
    assert text.stdout.splitlines()[-1].startswith(f"{len(doc['differences'])} differences")

    ignored = layerfs_json("compare", str(image), "--against", str(reference), "--ignore",
                           "content", "--ignore", "mtime_ns", "--tmp-dir", str(tmp_path),
                           expect=3)
    assert not {d["property"] for d in ignored["differences"]} & {"content", "mtime_ns"}
    _no_mounts_left(tmp_path)
    shutil.rmtree(reference)


def test_against_a_missing_dir_fails_cleanly(stack_image: Path, tmp_path: Path) -> None:
    result = run_layerfs("compare", str(stack_image), "--against", str(tmp_path / "nope"),
                         "--tmp-dir", str(tmp_path))
    assert result.returncode == 2 and "not a directory" in result.stderr
    _no_mounts_left(tmp_path)


@pytest.mark.usefixtures("needs_kernel_overlay")
def test_layers_unpacked_without_privileges_equal_kernel(umoci_layout: Path,
                                                         tmp_path: Path) -> None:
    """Layers whose owners, modes and devices live in the sidecar (an unprivileged
    unpack) are converted for the kernel and still compare equal."""
    from layerfs.images import open_image
    from layerfs.unpack import LayerCache

    cache = tmp_path / "user-cache"
    image = open_image(f"{umoci_layout}:v3", cache=LayerCache(cache, privileged=False),
                       quiet=True)
    assert any((Path(layer.root).parent / "meta.json").is_file() for layer in image.layers)
    doc = layerfs_json("compare", f"{umoci_layout}:v3", "--cache-dir", str(cache),
                       "--tmp-dir", str(tmp_path))
    assert doc["identical"], doc["differences"]


def test_a_merged_dirs_link_count_of_one_is_not_a_difference(tmp_path: Path) -> None:
    """layerfs and the kernel overlay give a directory merged from several layers nlink 1
    (its subdirectories are not counted); a plain copy counts them. A real difference
    is still found."""
    layers = [{b"t": Dir(), b"t/a": Dir(), b"t/a/f": File(b"a"), b"top": File(b"1")},
              {b"t": Dir(), b"t/b": Dir(), b"t/b/g": File(b"b")}]
    image = layer_dirs_image(tmp_path / "img", form="native", layers=layers)
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(image / "l0"), str(reference)], check=True)
    subprocess.run(["cp", "-a", f"{image / 'l1'}/.", str(reference)], check=True)
    assert os.lstat(reference / "t").st_nlink == 4
    doc = layerfs_json("compare", str(image), "--against", str(reference),
                       "--tmp-dir", str(tmp_path))
    assert doc["identical"], doc["differences"]
    mtime = os.lstat(reference / "t").st_mtime_ns
    (reference / "t" / "c").mkdir()  # a real difference: one more entry (and link)
    os.utime(reference / "t", ns=(mtime, mtime))
    differing = layerfs_json("compare", str(image), "--against", str(reference),
                             "--tmp-dir", str(tmp_path), expect=3)
    assert {(d["path"], d["property"]) for d in differing["differences"]} == \
        {("/t/c", "presence")}
    _no_mounts_left(tmp_path)
