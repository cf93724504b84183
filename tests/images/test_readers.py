"""Image readers without FUSE: platforms, references, history alignment, archives."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from layerfs.errors import ImageError
from layerfs.images import read_image
from layerfs.images.reference import Candidate, normalize, select
from layerfs.oci.config import layer_history
from layerfs.oci.platform import host_platform

from .tarbuild import f, layer_tar, write_multiarch_layout, write_oci_layout


def test_nested_index_picks_the_platform(tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    write_multiarch_layout(layout, {"amd64": [layer_tar([f("amd", b"1")])],
                                    "arm64": [layer_tar([f("arm", b"2")]),
                                              layer_tar([f("more", b"3")])]})
    assert len(read_image(str(layout), platform="linux/arm64").layers) == 2
    assert len(read_image(str(layout), platform="linux/amd64").layers) == 1
    if host_platform() in ("linux/amd64", "linux/arm64"):
        assert read_image(f"{layout}:latest").layers
    with pytest.raises(ImageError, match=r"no image for platform linux/s390x \(available: "
                                         r"linux/amd64, linux/arm64"):
        read_image(str(layout), platform="linux/s390x")


def test_oci_archive_is_read_in_place(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, {"v1": [layer_tar([f("a", b"a")])]})
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    plan = read_image(f"{archive}:v1")
    assert plan.form == "oci" and len(plan.layers) == 1
    assert plan.layers[0].blob is not None and plan.layers[0].blob.open().read(2) == b"\x1f\x8b"


@pytest.mark.parametrize("ref", ["nginx", "nginx:latest", "docker.io/library/nginx",
                                 "3f5ab1", "sha256:3f5ab1", "nginx@sha256:" + "d" * 64,
                                 "sha256:" + "d" * 64])
def test_references_resolve(ref: str) -> None:
    nginx = Candidate("nginx", image_id="sha256:3f5ab1" + "0" * 58,
                      names=["docker.io/library/nginx:latest"], digests=["sha256:" + "d" * 64])
    other = Candidate("other", image_id="sha256:" + "e" * 64, names=["quay.io/x/other:1"])
    assert select([nginx, other], ref, "store").item == "nginx"


def test_ambiguous_and_unknown_references_list_images() -> None:
    a = Candidate("a", image_id="sha256:abcd" + "0" * 60, names=["a:1"])
    b = Candidate("b", image_id="sha256:abcd" + "1" * 60, names=["b:1"])
    with pytest.raises(ImageError, match="'abcd' is ambiguous, it matches: a:1 .*; b:1"):
        select([a, b], "abcd", "store")
    with pytest.raises(ImageError, match="no image 'c'; available: a:1 .*; b:1"):
        select([a, b], "c", "store")


def test_normalize() -> None:
    assert normalize("nginx") == "docker.io/library/nginx:latest"
    assert normalize("user/app:1") == "docker.io/user/app:1"
    assert normalize("localhost:5000/app") == "localhost:5000/app:latest"
    assert normalize("quay.io/a/b@sha256:x") == "quay.io/a/b@sha256:x"


def test_history_skips_empty_layers() -> None:
    config = {"history": [{"created_by": "ADD base"}, {"created_by": "ENV x", "empty_layer": True},
                          {"created_by": "RUN make"}]}
    assert layer_history(config, 2) == ["ADD base", "RUN make"]
    assert layer_history({}, 2) == ["", ""]
