"""Docker data roots and containers-storage stores mount their images in place.

No daemon runs here: the stores are synthesised exactly as FORMATS.md sections 5 and 6
describe (see stores.py), from the umoci-built test image, and must mount equal to
``umoci unpack`` of the same image. Overlay-native whiteouts need root (trusted xattrs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .builtimages import build_umoci_layout, have, umoci_reference
from .mounting import mounted, run_layerfs, snapshot
from .stores import containers_storage, docker_root, oci_image

pytestmark = [
    pytest.mark.skipif(not have("umoci"), reason="umoci is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="overlay-native stores need root "
                                                 "(trusted.overlay xattrs, foreign owners)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("stores")
    layout = build_umoci_layout(work)
    config, tars = oci_image(layout, "v4")
    rootfs = umoci_reference(layout, "v4", work)
    return {"work": work, "config": config, "tars": tars, "rootfs": rootfs,
            "reference": snapshot(rootfs)}


def _assert_equal(root: Path, reference: dict) -> None:
    tree = snapshot(root)
    assert {p: (tree.get(p), reference.get(p)) for p in set(tree) | set(reference)
            if tree.get(p) != reference.get(p)} == {}


def test_docker_root(image, tmp_path: Path) -> None:
    store = tmp_path / "docker"
    image_id = docker_root(store, image["config"], image["tars"])
    for spec in (f"{store}:test/img:v4", f"{store}:{image_id[7:19]}", f"{store}:{image_id}"):
        with mounted(spec, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache")) as root:
            _assert_equal(root, image["reference"])
    assert not (tmp_path / "cache").exists(), "store layers are used in place"


def test_docker_root_needs_a_known_reference(image, tmp_path: Path) -> None:
    store = tmp_path / "docker"
    docker_root(store, image["config"], image["tars"])
    result = run_layerfs("inspect", f"{store}:nginx")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "no image 'nginx'; available: test/img:v4" in result.stderr
    result = run_layerfs("inspect", "--json", "--image", "test/img:v4", str(store))
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert len(layers) == 4 and all(layer["store_path"].endswith("/diff") for layer in layers)


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_containers_storage(image, tmp_path: Path, driver: str) -> None:
    store = tmp_path / "storage"
    containers_storage(store, image["config"], image["tars"], driver=driver,
                       reference_rootfs=image["rootfs"])
    with mounted(f"{store}:localhost/test/img:v4", tmp_path / "mnt") as root:
        _assert_equal(root, image["reference"])
    result = run_layerfs("inspect", f"{store}:test/img:v4")
    assert result.returncode == 0, result.stderr
    assert "umoci insert" in result.stdout


def test_images_of_stores(image, tmp_path: Path) -> None:
    """``layerfs images`` lists what a Docker root and a containers-storage store hold,
    with the image ID (config digest) and creation time of the config."""
    config = json.loads(image["config"])
    docker = tmp_path / "docker"
    image_id = docker_root(docker, image["config"], image["tars"])
    storage = tmp_path / "storage"
    containers_storage(storage, image["config"], image["tars"],
                       reference_rootfs=image["rootfs"])
    for store, name, form in ((docker, "test/img:v4", "docker-root"),
                              (storage, "localhost/test/img:v4", "containers-storage")):
        result = run_layerfs("images", "--json", str(store))
        assert result.returncode == 0, result.stderr
        listed = json.loads(result.stdout)
        assert [(i["names"], i["id"], i["created"], i["layers"], i["form"]) for i in listed] \
            == [([name], image_id, config["created"], 4, form)]
        table = run_layerfs("images", str(store)).stdout.splitlines()
        assert table[1].split()[:3] == [name, image_id[7:19], config["created"]]
