"""Images built at test time with umoci and converted with skopeo mount as ``umoci unpack``
unpacks them: same names, types, modes, owners, sizes, contents and symlink targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .builtimages import LONG, build_umoci_layout, have, run, umoci_reference
from .mounting import mounted, run_layerfs, snapshot

pytestmark = [
    pytest.mark.skipif(not have("umoci"), reason="umoci is not installed"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the reference (umoci unpack) has the image's "
                                                 "owners and devices only as root; see "
                                                 "test_rootless.py for the user's view"),
]
LONG_PATH = f"odd/{LONG}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("built")
    layout = build_umoci_layout(work)
    forms = {"oci": f"{layout}:v4"}
    if have("skopeo"):
        run("skopeo", "copy", "-q", f"oci:{layout}:v4", f"docker-archive:{work}/d.tar:test/img:v4")
        run("skopeo", "copy", "-q", f"oci:{layout}:v4", f"dir:{work}/skopeo-dir")
        run("skopeo", "copy", "-q", f"oci:{layout}:v4", f"oci-archive:{work}/o.tar:v4")
        run("skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "zstd",
            f"oci:{layout}:v4", f"oci:{work}/zstd:v4")
        forms.update({"docker-archive": f"{work}/d.tar", "skopeo-dir": f"{work}/skopeo-dir",
                      "oci-archive": f"{work}/o.tar", "oci-zstd": f"{work}/zstd:v4"})
    references = {tag: snapshot(umoci_reference(layout, tag, work)) for tag in
                  ("v1", "v2", "v3", "v4")}
    return {"work": work, "layout": layout, "forms": forms, "references": references}


def _differences(mounted_tree: dict, reference: dict) -> dict:
    return {path: (mounted_tree.get(path), reference.get(path))
            for path in set(mounted_tree) | set(reference)
            if mounted_tree.get(path) != reference.get(path)}


@pytest.mark.parametrize("tag", ["v1", "v2", "v3", "v4"])
def test_oci_layout_tags_equal_umoci_unpack(built, tmp_path: Path, tag: str) -> None:
    with mounted(f"{built['layout']}:{tag}", tmp_path / "mnt",
                 "--cache-dir", str(tmp_path / "cache")) as root:
        differences = _differences(snapshot(root), built["references"][tag])
    assert differences == {}


@pytest.mark.parametrize("form", ["docker-archive", "skopeo-dir", "oci-archive", "oci-zstd"])
def test_skopeo_forms_equal_umoci_unpack(built, tmp_path: Path, form: str) -> None:
    if form not in built["forms"]:
        pytest.skip("skopeo is not installed")
    with mounted(built["forms"][form], tmp_path / "mnt",
                 "--cache-dir", str(tmp_path / "cache")) as root:
        differences = _differences(snapshot(root), built["references"]["v4"])
    assert differences == {}


def test_whiteout_longer_than_name_max(built, tmp_path: Path) -> None:
    with mounted(f"{built['layout']}:v4", tmp_path / "mnt",
                 "--cache-dir", str(tmp_path / "cache")) as root:
        assert not os.path.lexists(root / LONG_PATH)


def test_forms_share_cached_layers(built, tmp_path: Path) -> None:
    """Compressed (OCI) and uncompressed (docker-archive) blobs of one image: same chainIDs."""
    cache = tmp_path / "cache"
    for form in ("oci", "docker-archive", "skopeo-dir"):
        if form in built["forms"]:
            with mounted(built["forms"][form], tmp_path / f"mnt-{form}", "--cache-dir", str(cache)):
                pass
    assert len(os.listdir(cache / "layers")) == 4
    listing = run_layerfs("cache", "ls", "--cache-dir", str(cache))
    assert listing.returncode == 0 and "4 layers" in listing.stdout


def test_inspect_agrees_across_forms(built) -> None:
    seen = {}
    for form, spec in built["forms"].items():
        result = run_layerfs("inspect", "--json", spec)
        assert result.returncode == 0, result.stderr
        layers = json.loads(result.stdout)["layers"]
        seen[form] = [(layer["diff_id"], layer["chain_id"], layer["entries"]) for layer in layers]
        assert [layer["created_by"] for layer in layers] == \
            ["umoci repack", "umoci repack", "umoci insert", "umoci insert"]
    assert len(set(map(tuple, seen.values()))) == 1


def test_prune_keeps_what_mounts_use(built, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with mounted(f"{built['layout']}:v2", tmp_path / "mnt", "--cache-dir", str(cache)):
        result = run_layerfs("cache", "prune", "--all", "--cache-dir", str(cache))
        assert result.returncode == 0 and "kept 2 in use" in result.stdout
        assert len(os.listdir(cache / "layers")) == 2
    result = run_layerfs("cache", "prune", "--all", "--cache-dir", str(cache))
    assert "removed 2 layers" in result.stdout
    assert os.listdir(cache / "layers") == []
