"""``layerfs images`` lists what a layout or archive holds, as skopeo sees each image;
``layerfs mounts`` lists live mounts, whose source in /proc/mounts and findmnt is the
image as the user named it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.explore.conftest import layerfs_json
from tests.explore.images import have, layout_tags, run, umoci_image
from tests.support.mounting import layerfs_mounted, run_layerfs


@pytest.fixture(scope="module")
def layout(module_scratch: Path) -> Path:
    if not (have("umoci") and have("skopeo")):
        pytest.skip("needs umoci and skopeo")
    return umoci_image(module_scratch / "images")


def skopeo_inspect(reference: str) -> dict:
    return json.loads(subprocess.run(["skopeo", "inspect", reference], check=True,
                                     capture_output=True).stdout)


def test_images_of_a_layout_are_its_tags_as_skopeo_sees_them(layout):
    images = layerfs_json("images", str(layout))
    assert sorted(n for image in images for n in image["names"]) == sorted(layout_tags(layout))
    for image in images:
        theirs = skopeo_inspect(f"oci:{layout}:{image['names'][0]}")
        assert image["digest"] == theirs["Digest"] and image["created"] == theirs["Created"]
        assert image["layers"] == len(theirs["Layers"]) and image["form"] == "oci"
        config = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{layout}:{image['names'][0]}"],
            check=True, capture_output=True).stdout)
        assert image["id"] == config["config"]["digest"]
        assert image["size"] == sum(layer["size"] for layer in config["layers"])

    table = run_layerfs("images", str(layout))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "ID", "CREATED", "SIZE", "LAYERS"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(layout_tags(layout))
    # the same list an unknown reference fails with
    wrong = run_layerfs("inspect", f"{layout}:nope")
    assert wrong.returncode == 1 and all(tag in wrong.stderr for tag in layout_tags(layout))


def test_images_of_a_docker_archive(layout, module_scratch):
    archive = module_scratch / "images" / "docker.tar"
    run("skopeo", "copy", "-q", f"oci:{layout}:v2", f"docker-archive:{archive}:example/app:2")
    images = layerfs_json("images", str(archive))
    assert [image["names"] for image in images] == [["docker.io/example/app:2"]]
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw",
                                          f"docker-archive:{archive}"], check=True,
                                         capture_output=True).stdout)
    assert images[0]["id"] == manifest["config"]["digest"]
    assert images[0]["created"] == skopeo_inspect(f"oci:{layout}:v2")["Created"]


def test_images_of_nothing_is_one_line(tmp_path):
    result = run_layerfs("images", str(tmp_path / "missing"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


def test_mounts_lists_a_live_mount_with_its_image_as_source(stack_image, module_scratch):
    image = module_scratch / "an image, with commas"
    shutil.copytree(stack_image, image, symlinks=True)
    mountpoint = module_scratch / "mnt"
    mountpoint.mkdir()
    with layerfs_mounted(mountpoint, str(image)) as daemon:
        mine = [m for m in layerfs_json("mounts") if m["mountpoint"] == str(mountpoint)]
        assert mine == [{"mountpoint": str(mountpoint), "image": str(image),
                         "type": "fuse.layerfs", "engine": mine[0]["engine"], "upper": None,
                         "pid": daemon.pid, "read_only": True}]
        assert mine[0]["engine"]
        found = json.loads(subprocess.run(["findmnt", "-J", "-o", "SOURCE,FSTYPE",
                                           str(mountpoint)], check=True,
                                          capture_output=True).stdout)["filesystems"]
        assert found == [{"source": str(image), "fstype": "fuse.layerfs"}]
        proc = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
        assert [line[0] for line in proc if line[1] == str(mountpoint)] == \
            [str(image).replace(" ", "\\040")]
        table = run_layerfs("mounts").stdout
        assert any(line.startswith(str(mountpoint)) and str(daemon.pid) in line.split()
                   for line in table.splitlines())
    assert not [m for m in layerfs_json("mounts") if m["mountpoint"] == str(mountpoint)]
    assert os.path.isdir(mountpoint)


def test_records_of_dead_daemons_are_ignored_and_pruned(tmp_path):
    from layerfs.mountrecord import record_path

    gone = subprocess.Popen(["true"])
    gone.wait()
    mountpoint = str(tmp_path / "never-mounted")
    path = record_path(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mountpoint": mountpoint, "image": "x", "engine": "pyfuse3",
                                "upper": None, "pid": gone.pid, "started": 1}))
    try:
        assert all(m["mountpoint"] != mountpoint for m in layerfs_json("mounts"))
        assert not path.exists()
    finally:
        path.unlink(missing_ok=True)
