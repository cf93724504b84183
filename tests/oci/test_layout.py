"""The one OCI layout class: created, appended to (pull -o, commit --into) and read back,
from the directory and from a tar of it."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from layerfs.errors import ImageError, UsageError
from layerfs.images.files import DirFiles, TarFiles
from layerfs.oci.layout import Layout
from layerfs.oci.mediatypes import (
    DOCKER_GZIP_LAYER,
    DOCKER_MANIFEST,
    OCI_GZIP_LAYER,
    OCI_MANIFEST,
    REF_NAME,
)
from layerfs.oci.model import Descriptor

LAYER = gzip.compress(b"not really a tar, never unpacked here", mtime=0)
DIFF_ID = "sha256:" + hashlib.sha256(b"the tar").hexdigest()


def new_layout(path: Path) -> Layout:
    path.mkdir()
    layout = Layout(DirFiles(path))
    layout.create()
    return layout


def add(layout: Layout, tag: str | None, layers: int, media_type: str = OCI_MANIFEST,
        platform: dict | None = None) -> Descriptor:
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [DIFF_ID] * layers},
                         "history": [{"created_by": f"step {n}"} for n in range(layers)]}
                        ).encode()
    layer = layout.write_blob(LAYER)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": layout.write_blob(config), "size": len(config)},
        "layers": [{"mediaType": OCI_GZIP_LAYER, "digest": layer, "size": len(LAYER)}] * layers
    }).encode()
    extra = {"platform": platform} if platform else {}
    entry = Descriptor.of(manifest, media_type, layout.write_blob(manifest), **extra)
    layout.add_image(entry, tag)
    return entry


def test_round_trip(tmp_path: Path) -> None:
    layout = new_layout(tmp_path / "l")
    first = add(layout, "v1", 1)
    add(layout, "v2", 2)
    assert layout.tags() == ["v1", "v2"]
    again = add(layout, "v1", 3)  # the tag moves
    assert layout.tags() == ["v2", "v1"]
    add(layout, None, 1)
    add(layout, None, 1)  # an untagged image replaces the same untagged one
    assert layout.tags() == ["v2", "v1", ""]
    assert layout.has_blob(first.digest, first.size or 0)
    assert not layout.has_blob(first.digest, 1)
    for files in (DirFiles(tmp_path / "l"), _archive(tmp_path)):
        read = Layout(files)
        assert Layout.is_layout(files)
        entry = next(e for e in read.images() if e.annotations.get(REF_NAME) == "v1")
        assert entry.digest == again.digest
        image = read.resolve(entry, "linux/amd64")
        assert len(image.manifest.layers) == 3 and image.config.diff_ids == (DIFF_ID,) * 3
        assert image.config.created_by == ("step 0", "step 1", "step 2")
    assert not list((tmp_path / "l").rglob(".*"))  # no temporary file left


def _archive(tmp_path: Path) -> TarFiles:
    archive = tmp_path / "l.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "l", arcname=".")
    return TarFiles(archive)


@pytest.mark.parametrize("media_type, layer_type", [(OCI_MANIFEST, OCI_GZIP_LAYER),
                                                    (DOCKER_MANIFEST, DOCKER_GZIP_LAYER)])
def test_append_layer(tmp_path: Path, media_type: str, layer_type: str) -> None:
    layout = new_layout(tmp_path / "l")
    add(layout, "base", 1, media_type, {"os": "linux", "architecture": "amd64"})
    blob = layout.write_blob(b"new layer")
    result = layout.append_layer(
        "base", "next", Descriptor.decode({"mediaType": OCI_GZIP_LAYER, "digest": blob,
                                           "size": 9}, "t"),
        "sha256:" + "9" * 64, created_by="layerfs commit", created="2026-01-01T00:00:00Z",
        comment="why")
    assert result["tag"] == "next" and result["layers"] == 2
    entry = next(e for e in layout.images() if e.annotations.get(REF_NAME) == "next")
    assert entry.platform is not None and entry.media_type == media_type
    image = layout.resolve(entry, "linux/amd64")
    assert image.document.digest == result["manifest"]
    assert image.config.diff_ids == (DIFF_ID, "sha256:" + "9" * 64)
    assert image.config.created_by == ("step 0", "layerfs commit")
    assert image.config.raw["history"][-1]["comment"] == "why"
    assert image.manifest.layers[-1].media_type == layer_type
    assert layout.tags() == ["base", "next"]


def test_base_must_be_one_image(tmp_path: Path) -> None:
    layout = new_layout(tmp_path / "l")
    with pytest.raises(ImageError, match="index.json is missing"):
        layout.base(None)
    add(layout, "a", 1)
    add(layout, "b", 1)
    with pytest.raises(UsageError, match=r"several images; name the base with --base "
                                         r"\(tags: a, b\)"):
        layout.base(None)
    with pytest.raises(UsageError, match=r"no image 'c'"):
        layout.base("c")
    assert layout.base("a")[0].annotations[REF_NAME] == "a"


def test_a_damaged_index_is_refused_before_writing(tmp_path: Path) -> None:
    layout = new_layout(tmp_path / "l")
    add(layout, "a", 1)
    (tmp_path / "l" / "index.json").write_text('{"manifests": [{"digest": 5}]}')
    with pytest.raises(ImageError, match=r"index\.json: descriptor 'digest' is not a string "
                                         r"\(at manifests\[0\]\.digest\)"):
        add(layout, "b", 1)
    assert (tmp_path / "l" / "index.json").read_text() == '{"manifests": [{"digest": 5}]}'
