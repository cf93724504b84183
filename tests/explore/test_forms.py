"""The explore commands on image forms whose layers are used in place (Docker data root,
containers-storage): overlay-native layer dirs, 0/0 whiteouts, opaque xattrs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.explore.conftest import layerfs_json
from tests.images.stores import containers_storage, docker_root, oci_image

pytestmark = pytest.mark.usefixtures("needs_root")


@pytest.fixture(scope="module")
def stores(umoci_layout: Path, module_scratch: Path) -> dict[str, str]:
    config, tars = oci_image(umoci_layout, "v3")
    docker = module_scratch / "docker"
    docker_root(docker, config, tars)
    storage = module_scratch / "storage"
    containers_storage(storage, config, tars)
    return {"docker": f"{docker}:test/img:v4", "storage": f"{storage}:localhost/test/img:v4"}


@pytest.mark.parametrize("form", ["docker", "storage"])
def test_which_diff_usage_in_place(stores: dict[str, str], form: str) -> None:
    image = stores[form]
    paths = {p["path"]: p for p in layerfs_json("which", image, "/etc/hosts", "/etc/config",
                                                "/data/dir1/a", expect=1)["paths"]}
    assert paths["/etc/hosts"]["provider"]["index"] == 2
    assert paths["/etc/config"]["hidden_by"]["marker"] == "char 0/0"
    assert paths["/data/dir1/a"]["hidden_by"]["marker"] == "trusted.overlay.opaque=y"
    changes = {c["path"]: c for c in layerfs_json("diff", image, "-1")["diffs"][0]["changes"]}
    assert changes["/data"]["kind"] == "opaque"
    usage = layerfs_json("usage", image)
    assert usage["wasted_bytes"] > 0 and len(usage["layers"]) == 3


@pytest.mark.usefixtures("needs_kernel_overlay")
@pytest.mark.parametrize("form", ["docker", "storage"])
def test_compare_in_place(stores: dict[str, str], form: str, tmp_path: Path) -> None:
    doc = layerfs_json("compare", stores[form], "--tmp-dir", str(tmp_path))
    assert doc["identical"], doc["differences"]
