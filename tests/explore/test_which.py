"""``layerfs which``: provider, shadowed versions, and what hides a hidden path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.explore.conftest import layerfs_json
from tests.explore.images import layer_dirs_image
from tests.support.mounting import run_layerfs


def _paths(document: dict) -> dict:
    return {p["path"]: p for p in document["paths"]}


def test_provider_and_shadowed_versions(stack_image: Path) -> None:
    doc = _paths(layerfs_json("which", str(stack_image), "/etc/hosts", "etc"))
    hosts = doc["/etc/hosts"]
    assert hosts["visible"] and hosts["type"] == "file"
    assert hosts["provider"]["index"] == 3
    assert [(v["layer"], v["state"], v["size"]) for v in hosts["versions"]] == [
        (3, "provides", 30), (2, "shadowed", 20), (1, "shadowed", 10)]
    assert hosts["versions"][1]["hidden_by"] == {
        "layer": 3, "how": "shadowed", "path": "/etc/hosts", "marker": "file"}
    assert hosts["versions"][0]["mode"] == "0600"
    etc = doc["/etc"]
    assert etc["merged_from"] == [3, 2, 1]
    assert [v["state"] for v in etc["versions"]] == ["provides", "merged", "merged"]


def test_hidden_paths_name_their_cause(stack_image: Path) -> None:
    doc = _paths(layerfs_json("which", str(stack_image), "/gone/x", "/opq/old", "/swap/c",
                              "/tmp/big", "/nowhere", expect=1))
    assert doc["/gone/x"]["hidden_by"] == {"layer": 2, "how": "whiteout", "path": "/gone",
                                           "marker": ".wh.gone"}
    assert doc["/opq/old"]["hidden_by"] == {"layer": 2, "how": "opaque", "path": "/opq",
                                            "marker": ".wh..wh..opq"}
    assert doc["/swap/c"]["hidden_by"] == {"layer": 2, "how": "replaced", "path": "/swap",
                                           "marker": "file"}
    big = doc["/tmp/big"]
    assert big["hidden_by"]["how"] == "whiteout" and big["hidden_by"]["layer"] == 3
    assert [v["state"] for v in big["versions"]] == ["whiteout", "hidden"]
    assert doc["/nowhere"]["versions"] == [] and not doc["/nowhere"]["visible"]


def test_opaque_dir_hides_its_lower_copy(stack_image: Path) -> None:
    doc = _paths(layerfs_json("which", str(stack_image), "/opq", "/opq/kept"))
    assert [v["state"] for v in doc["/opq"]["versions"]] == ["provides", "hidden"]
    assert doc["/opq"]["versions"][1]["hidden_by"]["how"] == "opaque"
    kept = doc["/opq/kept"]["versions"]
    assert [(v["layer"], v["state"]) for v in kept] == [(2, "provides"), (1, "hidden")]


@pytest.mark.usefixtures("needs_root")
def test_native_whiteouts_are_named(tmp_path: Path) -> None:
    image = layer_dirs_image(tmp_path / "native", form="native")
    doc = _paths(layerfs_json("which", str(image), "/gone/y", "/opq/old", expect=1))
    assert doc["/gone/y"]["hidden_by"]["marker"] == "char 0/0"
    assert doc["/opq/old"]["hidden_by"]["marker"] == "trusted.overlay.opaque=y"


def test_table_output_is_plain_when_piped(stack_image: Path) -> None:
    result = run_layerfs("which", str(stack_image), "/etc/hosts", "/gone/x")
    assert result.returncode == 1
    assert "\x1b[" not in result.stdout
    assert "from layer 3" in result.stdout
    assert "deleted by .wh.gone for /gone in layer 2" in result.stdout


def test_umoci_image(umoci_layout: Path, cache_dir: Path) -> None:
    doc = layerfs_json("which", f"{umoci_layout}:v3", "--cache-dir", str(cache_dir),
                       "/etc/hosts", "/etc/config", "/etc/keep/a", "/data/dir1/a", "/new/file",
                       expect=1)
    paths = _paths(doc)
    hosts = paths["/etc/hosts"]
    assert hosts["provider"]["index"] == 2
    assert hosts["provider"]["created_by"] == "edit things"
    assert hosts["provider"]["diff_id"].startswith("sha256:")
    assert hosts["provider"]["chain_id"].startswith("sha256:")
    assert [v["state"] for v in hosts["versions"]] == ["provides", "shadowed"]
    assert paths["/etc/config"]["hidden_by"]["how"] == "whiteout"
    assert paths["/etc/config"]["hidden_by"]["layer"] == 2
    assert paths["/etc/keep/a"]["hidden_by"]["how"] in ("whiteout", "replaced")
    assert paths["/data/dir1/a"]["hidden_by"] == {
        "layer": 3, "how": "opaque", "path": "/data",
        "marker": paths["/data/dir1/a"]["hidden_by"]["marker"]}
    assert paths["/new/file"]["visible"]
    assert os.path.isdir(cache_dir)


@pytest.mark.usefixtures("needs_root")
def test_unprivileged_unpack_shows_recorded_metadata(umoci_layout: Path, tmp_path: Path) -> None:
    """Layers unpacked without privileges keep owners and devices in their sidecar;
    which/diff/usage show what the image holds, as the mount does."""
    from layerfs.images import open_image
    from layerfs.unpack import LayerCache

    cache = tmp_path / "user-cache"
    open_image(f"{umoci_layout}:v3", cache=LayerCache(cache, privileged=False), quiet=True)
    doc = _paths(layerfs_json("which", f"{umoci_layout}:v3", "--cache-dir", str(cache),
                              "/home/user/file", "/dev/null0", "/bin/tool"))
    assert (doc["/home/user/file"]["versions"][0]["uid"],
            doc["/home/user/file"]["versions"][0]["gid"]) == (1000, 1000)
    assert doc["/dev/null0"]["type"] == "char"
    assert doc["/bin/tool"]["versions"][1]["mode"] == "4755"
    changes = layerfs_json("diff", f"{umoci_layout}:v3", "2", "--cache-dir", str(cache))
    tool = [c for c in changes["diffs"][0]["changes"] if c["path"] == "/bin/tool"][0]
    assert tool["before"]["mode"] == "4755" and tool["after"]["mode"] == "0700"


def test_symlinked_parents_are_followed_as_the_mount_follows_them(tmp_path: Path) -> None:
    """A usr-merged image (/bin -> usr/bin): /bin/bash is /usr/bin/bash, whose layer is
    named, and the answer says the path went through the symlink; the last component
    itself is not followed (/bin is the symlink)."""
    from tests.explore.images import File, Symlink

    layers = [{b"bin": Symlink(b"usr/bin"), b"usr/bin/bash": File(b"bash 1", 0o755),
               b"lib": Symlink(b"/usr/lib"), b"usr/lib/libc.so": File(b"libc")},
              {b"usr/bin/bash": File(b"bash 2", 0o755)}]
    image = layer_dirs_image(tmp_path / "img", form="native", layers=layers)
    doc = layerfs_json("which", str(image), "/bin/bash", "/lib/libc.so", "/bin")
    bash, libc, bin_link = doc["paths"]
    assert bash["path"] == "/usr/bin/bash" and bash["asked"] == "/bin/bash"
    assert bash["provider"]["index"] == 2
    assert bash["via"] == [{"link": "/bin", "target": "usr/bin"}]
    assert [v["state"] for v in bash["versions"]] == ["provides", "shadowed"]
    assert libc["path"] == "/usr/lib/libc.so" and libc["provider"]["index"] == 1
    assert libc["via"] == [{"link": "/lib", "target": "/usr/lib"}]
    assert bin_link["path"] == "/bin" and bin_link["type"] == "symlink"
    assert bin_link["via"] == []
    text = run_layerfs("which", str(image), "/bin/bash")
    assert text.returncode == 0, text.stderr
    assert "/bin/bash is /usr/bin/bash: through the symlink /bin -> usr/bin" in text.stdout
    assert "from layer 2" in text.stdout
