"""Every real docker-save fixture (shared/fixtures/real/) mounts and shows the merged view
its README describes, read from the archive and from the archive extracted to a directory."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from tests.support import extraction_filter

from .mounting import mounted, names, run_layerfs

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/real")

pytestmark = [
    pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared/fixtures/real is not present"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
]

# fixture file, reference, the merged view (path -> content or None for a directory)
EXPECTED = [
    ("hello-world-v25.tar", None, {"hello": 9136}),
    ("test_link.tar", "test_image_1", {"bar": b"bar\n", "foo": b"foo\n"}),
    ("test_link.tar", "bazel/v1/tarball:test_image_3",
     {"bar": b"bar\n", "foo": b"foo\n", "test": b"hello\n"}),
    ("whiteout_image.tar", None, {"bar.txt": b"bar\n"}),
    ("whiteout_dir.tar", None, {"a": None, "a/baz": b"", "b": None, "b/bar": b""}),
    ("almostempty.tar", None, {"emptyfile": b""}),
    ("emptyLayer.tar", None, {"tmp": None, "tmp/foo": b"foo\n"}),
]


def _extracted(archive: Path, tmp_path: Path) -> Path:
    target = tmp_path / (archive.stem + "-dir")
    with tarfile.open(archive) as tar:
        tar.extractall(target, **extraction_filter("tar"))
    return target


def _check_view(root: Path, expected: dict) -> None:
    assert names(root) == set(expected)
    for path, want in expected.items():
        full = root / path
        if want is None:
            assert full.is_dir()
        elif isinstance(want, int):
            assert full.stat().st_size == want
        else:
            assert full.read_bytes() == want


@pytest.mark.parametrize("as_dir", [False, True], ids=["archive", "extracted"])
@pytest.mark.parametrize("fixture, ref, expected", EXPECTED,
                         ids=[f"{e[0]}:{e[1]}" if e[1] else e[0] for e in EXPECTED])
def test_fixture_mounts_with_its_merged_view(tmp_path: Path, fixture, ref, expected,
                                             as_dir: bool) -> None:
    image = FIXTURES / fixture
    if as_dir:
        image = _extracted(image, tmp_path)
    spec = f"{image}:{ref}" if ref else str(image)
    with mounted(spec, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache")) as root:
        _check_view(root, expected)


def test_modes_and_content_survive(tmp_path: Path) -> None:
    with mounted(str(FIXTURES / "whiteout_image.tar"), tmp_path / "mnt",
                 "--cache-dir", str(tmp_path / "cache")) as root:
        st = os.lstat(root / "bar.txt")
        assert stat.S_IMODE(st.st_mode) == 0o555 and (st.st_uid, st.st_gid) == (0, 0)


def test_shared_base_layer_is_unpacked_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for ref in ("test_image_1", "test_image_3"):
        result = run_layerfs("inspect", "--json", f"{FIXTURES / 'test_link.tar'}:{ref}")
        assert result.returncode == 0, result.stderr
        with mounted(f"{FIXTURES / 'test_link.tar'}:{ref}", tmp_path / f"mnt-{ref}",
                     "--cache-dir", str(cache)):
            pass
    # test_image_1 = [base], test_image_3 = [base, test]: two layers in all.
    assert len(os.listdir(cache / "layers")) == 2
    listing = run_layerfs("cache", "ls", "--cache-dir", str(cache))
    assert listing.returncode == 0 and "test_link.tar" in listing.stdout


def test_archive_with_several_images_needs_a_reference(tmp_path: Path) -> None:
    result = run_layerfs("mount", "--cache-dir", str(tmp_path / "cache"),
                         str(FIXTURES / "test_link.tar"), str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "holds 2 images" in result.stderr and "bazel/v1/tarball:test_image_3" in result.stderr


@pytest.mark.parametrize("ref", ["nope", "sha256:" + "0" * 64])
def test_unknown_reference_lists_available_images(tmp_path: Path, ref: str) -> None:
    result = run_layerfs("mount", "--cache-dir", str(tmp_path / "cache"),
                         f"{FIXTURES / 'test_link.tar'}:{ref}", str(tmp_path))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"no image '{ref}'" in result.stderr and "test_image_1" in result.stderr
    assert not (tmp_path / "cache" / "layers").exists() or \
        not os.listdir(tmp_path / "cache" / "layers")


def test_inspect_fixture(tmp_path: Path) -> None:
    result = run_layerfs("inspect", str(FIXTURES / "whiteout_dir.tar"))
    assert result.returncode == 0, result.stderr
    head, _, table = result.stdout.partition("\n\n")  # what skopeo shows, then the layers
    lines = table.splitlines()
    assert "4 layers" in head.splitlines()[0] and "Created:" in head
    assert lines[0].startswith("#  DIFFID") and "COPY dir:" in lines[1]
    shutil.rmtree(tmp_path, ignore_errors=True)
