"""containers-transports(5) names wherever an IMAGE is taken: oci:, oci-archive:,
docker-archive:, dir:, containers-storage: (default store from storage.conf), with errors
that name the transport; a plain path keeps working, also one named like a transport."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerfs.errors import ImageError, UsageError
from layerfs.images import read_image
from layerfs.images.transport import absolute, parse
from tests.support.mounting import force_unmount
from tests.support.mounting import run_layerfs as run_in

from .mounting import run_layerfs
from .stores import containers_storage
from .tarbuild import f, image_config, layer_tar, write_oci_layout

TARS = [layer_tar([f("etc/motd", b"one\n")]), layer_tar([f("etc/motd", b"two\n")])]


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    write_oci_layout(tmp_path / "layout", {"v1": TARS[:1], "v2": TARS})
    return tmp_path / "layout"


def _archive(directory: Path, target: Path) -> Path:
    with tarfile.open(target, "w") as tar:
        for entry in sorted(directory.iterdir()):
            tar.add(entry, arcname=entry.name)
    return target


def test_oci_and_oci_archive(layout, tmp_path):
    assert len(read_image(f"oci:{layout}:v2").layers) == 2
    assert len(read_image(f"oci:{layout}", image_ref="v1").layers) == 1
    archive = _archive(layout, tmp_path / "img.tar")
    assert len(read_image(f"oci-archive:{archive}:v1").layers) == 1
    assert read_image(f"oci-archive:{archive}:v2").form == "oci"


def test_errors_name_the_transport(layout, tmp_path):
    cases = {
        f"oci:{tmp_path}/nope:v1": f"oci:{tmp_path}/nope: no such OCI layout directory",
        f"oci:{layout}:v9": "oci:",
        f"docker-archive:{layout}": f"docker-archive:{layout}: not a docker save archive",
        f"dir:{layout}": f"dir:{layout}: not a skopeo dir: directory",
        f"containers-storage:[{tmp_path}/nostore]x":
            f"containers-storage:[{tmp_path}/nostore]: no such store",
    }
    for spec, message in cases.items():
        with pytest.raises(ImageError) as raised:
            read_image(spec)
        assert str(raised.value).startswith(message), (spec, str(raised.value))
    with pytest.raises(UsageError, match="oci: takes only oci"):
        read_image(f"oci:{layout}:v1", "skopeo-dir")


def test_a_file_named_like_a_transport_is_a_path(layout, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(layout, tmp_path / "oci:odd")
    assert parse("oci:odd").transport is None
    assert len(read_image("oci:odd:v2").layers) == 2


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_docker_archive_and_dir_written_by_skopeo(layout, tmp_path):
    for target in (f"docker-archive:{tmp_path}/d.tar:test/img:v2", f"dir:{tmp_path}/skd"):
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:v2", target], check=True,
                       capture_output=True, timeout=120)
    assert read_image(f"docker-archive:{tmp_path}/d.tar").form.startswith("docker-save")
    assert len(read_image(f"docker-archive:{tmp_path}/d.tar:test/img:v2").layers) == 2
    assert read_image(f"dir:{tmp_path}/skd").form == "skopeo-dir"


def test_containers_storage_explicit_and_default_store(tmp_path, monkeypatch):
    store = tmp_path / "store"
    containers_storage(store, image_config(TARS), TARS, name="localhost/test/img:v4")
    assert len(read_image(f"containers-storage:[{store}]localhost/test/img:v4").layers) == 2
    assert len(read_image(f"containers-storage:[overlay@{store}+/run/x:opt=1]test/img:v4")
               .layers) == 2
    with pytest.raises(ImageError, match="driver 'btrfs' is not read"):
        read_image(f"containers-storage:[btrfs@{store}]test/img:v4")
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{store}"\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    plan = read_image("containers-storage:localhost/test/img:v4")
    assert plan.form == "containers-storage" and len(plan.layers) == 2


def test_absolute_keeps_the_transport_and_reference(layout, tmp_path, monkeypatch):
    monkeypatch.chdir(layout.parent)
    assert absolute("oci:layout:v1") == f"oci:{layout}:v1"
    assert absolute("layout:v1") == f"{layout}:v1"
    assert absolute("docker://example.com/a:b") == "docker://example.com/a:b"
    (tmp_path / "st").mkdir()
    monkeypatch.chdir(tmp_path)
    assert absolute("containers-storage:[vfs@st]img") == f"containers-storage:[vfs@{tmp_path}/st]img"


def test_every_command_takes_transport_names(layout, tmp_path):
    """The command line end to end: inspect, which, and a background mount with a
    relative transport path."""
    inspect = run_layerfs("inspect", f"oci:{layout}:v2")
    assert inspect.returncode == 0 and "2 layers" in inspect.stdout, inspect.stderr
    which = run_layerfs("which", f"oci:{layout}:v2", "/etc/motd", "--cache-dir",
                        str(tmp_path / "cache"))
    assert which.returncode == 0 and "2" in which.stdout, which.stderr
    missing = run_layerfs("inspect", f"oci:{tmp_path}/nope:v1")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"layerfs: oci:{tmp_path}/nope: no such OCI layout directory"
    (tmp_path / "mnt").mkdir()
    mounted = run_in("mount", "--cache-dir", "cache", "oci:layout:v2", "mnt", cwd=tmp_path)
    try:
        assert mounted.returncode == 0, mounted.stderr
        assert (tmp_path / "mnt" / "etc" / "motd").read_bytes() == b"two\n"
    finally:
        force_unmount(tmp_path / "mnt")
