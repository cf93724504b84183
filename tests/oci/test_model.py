"""The OCI model's decoding: typed values from good documents, one clear error naming the
file and the field path from bad ones, and the leniencies real images need."""

from __future__ import annotations

import pytest

from layerfs.errors import ImageError
from layerfs.oci.config import ImageConfig
from layerfs.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from layerfs.oci.model import Descriptor, ImageManifest, Index, sniff_media_type
from layerfs.oci.platform import Platform, describe, matches

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def entry(digest: str = A, **extra: object) -> dict:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": 7, **extra}


def test_descriptor_is_typed_and_frozen() -> None:
    descriptor = Descriptor.decode(entry(annotations={"k": "v"}, platform={
        "os": "linux", "architecture": "arm64", "variant": "v8"}, urls=["x"]), "f")
    assert (descriptor.digest, descriptor.media_type, descriptor.size) == (A, OCI_MANIFEST, 7)
    assert descriptor.annotations == {"k": "v"}
    assert descriptor.platform == Platform("linux", "arm64", "v8")
    assert descriptor.to_json()["urls"] == ["x"]  # unknown fields kept for writing back
    with pytest.raises(AttributeError):
        descriptor.digest = B  # type: ignore[misc]
    with pytest.raises(TypeError):
        descriptor.annotations["k"] = "w"  # type: ignore[index]


@pytest.mark.parametrize("change, message", [
    ({"digest": 7}, r"^IMG: index\.json: descriptor 'digest' is not a string "
                    r"\(at manifests\[2\]\.digest\)$"),
    ({"digest": "sha256:../../etc"}, r"^IMG: index\.json: descriptor: 'sha256:\.\./\.\./etc' is "
                                     r"not a valid digest \(at manifests\[2\]\.digest\)$"),
    ({"size": -1}, r"descriptor 'size' is negative \(at manifests\[2\]\.size\)$"),
    ({"size": True}, r"descriptor 'size' is not a number \(at manifests\[2\]\.size\)$"),
    ({"size": "big"}, r"descriptor 'size' is not a number \(at manifests\[2\]\.size\)$"),
    ({"mediaType": 3}, r"descriptor 'mediaType' is not a string \(at manifests\[2\]\.mediaType\)"),
    ({"annotations": []}, r"descriptor 'annotations' is not an object "
                          r"\(at manifests\[2\]\.annotations\)"),
    ({"annotations": {"k": 1}}, r"descriptor annotations are not strings "
                                r"\(at manifests\[2\]\.annotations\)"),
])
def test_index_errors_name_the_file_and_the_field(change: dict, message: str) -> None:
    document = {"manifests": [entry(), entry(B), {**entry(), **change}]}
    with pytest.raises(ImageError, match=message):
        Index.decode(document, "IMG: index.json")


def test_index_leniencies() -> None:
    assert Index.decode({"manifests": None}, "i").manifests == ()  # Docker 25
    assert Index.decode({}, "i").manifests == ()
    index = Index.decode({"mediaType": OCI_INDEX, "manifests": [42, "x", entry(
        platform="linux/amd64"), entry(B, mediaType="application/vnd.in-toto+json")]}, "i")
    assert [m.digest for m in index.manifests] == [A, B]  # non-objects skipped
    assert index.manifests[0].platform is None  # a platform that is not an object: none
    assert [m.digest for m in index.images()] == [A]  # the attestation is not an image
    with pytest.raises(ImageError, match=r"^i: 'manifests' is not a list \(at manifests\)$"):
        Index.decode({"manifests": "abc"}, "i")
    with pytest.raises(ImageError, match=r"^i: index is not an object$"):
        Index.decode([], "i")


@pytest.mark.parametrize("document, message", [
    ({"layers": []}, r"^M: 'config' is not an object \(at config\)$"),
    ({"config": entry(), "layers": "x"}, r"^M: 'layers' is not a list \(at layers\)$"),
    ({"config": entry(), "layers": [entry(), 5]}, r"^M: layer 2 is not an object "
                                                  r"\(at layers\[1\]\)$"),
    ({"config": entry(), "layers": [{"digest": A, "size": "1"}]},
     r"^M: layer 1: descriptor 'size' is not a number \(at layers\[0\]\.size\)$"),
    ({"config": {"digest": 1}, "layers": []},
     r"^M: config: descriptor 'digest' is not a string \(at config\.digest\)$"),
])
def test_manifest_errors(document: dict, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        ImageManifest.decode(document, "M")


def test_manifest_decodes() -> None:
    manifest = ImageManifest.decode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                     "config": entry(), "layers": [entry(B), entry()]}, "M")
    assert manifest.config.digest == A and [m.digest for m in manifest.layers] == [B, A]
    assert manifest.media_type == OCI_MANIFEST


def test_config() -> None:
    config = ImageConfig.decode({"rootfs": {"diff_ids": [A, B]}, "history": [
        {"created_by": "one"}, {"empty_layer": True, "created_by": "env"}, "junk",
        {"created_by": "two"}, {"created_by": "three"}]}, "IMG")
    assert config.diff_ids == (A, B) and config.created_by == ("one", "two")
    assert ImageConfig.decode({"rootfs": {"diff_ids": [A]}, "history": "oops"},
                              "IMG").created_by == ("",)
    for bad in ({}, {"rootfs": []}, {"rootfs": {"diff_ids": [1]}}, []):
        with pytest.raises(ImageError, match=r"^IMG: image config has no rootfs\.diff_ids list$"):
            ImageConfig.decode(bad, "IMG")


def test_platforms() -> None:
    assert matches({"os": "linux", "architecture": "arm64"}, "linux/arm64/v8")
    assert not matches({"os": "linux", "architecture": "arm64", "variant": "v7"},
                       "linux/arm64/v8")
    assert not matches("linux/amd64", "linux/amd64") and not matches({"os": 5}, "linux/amd64")
    assert describe({"os": "linux", "architecture": "arm", "variant": "v7"}) == "linux/arm/v7"
    assert describe({"architecture": 3}) == "?/?"


def test_sniff_media_type() -> None:
    assert sniff_media_type(b'{"mediaType": "x"}') == "x"
    assert sniff_media_type(b"[1]") == sniff_media_type(b"{") == ""
    assert sniff_media_type(b'{"mediaType": 1}') == ""
