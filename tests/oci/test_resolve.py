"""The one resolver (index -> the platform's manifest -> config) over blobs held in memory:
platform choice, nesting limit, cycles, the checks between manifest and config."""

from __future__ import annotations

import hashlib
import json

import pytest

from layerfs.errors import ImageError
from layerfs.oci.mediatypes import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST
from layerfs.oci.model import Descriptor
from layerfs.oci.resolve import MAX_NESTING, Document, follow, resolve


class Blobs:
    """A content store in memory (the digest is not checked here: the real fetchers do it,
    and the cycle test needs a blob under a name that is not its hash)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def put(self, document: object, media_type: str = "", **extra: object) -> dict:
        data = json.dumps(document).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.data[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def fetch(self, descriptor: Descriptor, what: str) -> Document:
        self.fetched.append(descriptor.digest)
        if descriptor.digest not in self.data:
            raise ImageError(f"store: {what} blob {descriptor.digest} is missing")
        return Document(self.data[descriptor.digest], descriptor.media_type, descriptor.digest)

    def start(self, descriptor: dict) -> Document:
        return self.fetch(Descriptor.decode(descriptor, "start"), "manifest")


def image(blobs: Blobs, layers: int, tag: str = "") -> dict:
    diff_ids = ["sha256:" + hashlib.sha256(f"{tag}{n}".encode()).hexdigest()
                for n in range(layers)]
    config = blobs.put({"rootfs": {"type": "layers", "diff_ids": diff_ids},
                        "history": [{"created_by": f"{tag} step {n}"} for n in range(layers)]})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": d, "size": 1} for d in diff_ids]}
    return blobs.put(manifest, OCI_MANIFEST)


def platformed(blobs: Blobs, arch: str, layers: int) -> dict:
    return {**image(blobs, layers, arch), "platform": {"os": "linux", "architecture": arch}}


def test_a_manifest_resolves_to_itself_with_its_config() -> None:
    blobs = Blobs()
    found = resolve(blobs.start(image(blobs, 2, "x")), blobs.fetch, "linux/amd64", "IMG")
    assert len(found.manifest.layers) == 2 and found.index is None
    assert found.config.created_by == ("x step 0", "x step 1")


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST, ""])
def test_an_index_is_followed_to_the_platform(index_type: str) -> None:
    blobs = Blobs()
    index = blobs.put({"manifests": [platformed(blobs, "amd64", 1),
                                     platformed(blobs, "arm64", 3)]}, index_type)
    for arch, layers in (("amd64", 1), ("arm64", 3)):
        found = resolve(blobs.start(index), blobs.fetch, f"linux/{arch}", "IMG")
        assert len(found.manifest.layers) == layers
        assert found.index is not None and found.index.digest == index["digest"]
    attestation = {**blobs.put({"x": 1}), "platform": {"os": "unknown",
                                                       "architecture": "unknown"}}
    index = blobs.put({"manifests": [platformed(blobs, "amd64", 1),
                                     platformed(blobs, "arm64", 3), attestation]}, index_type)
    with pytest.raises(ImageError, match=r"^IMG: index sha256:[0-9a-f]{64}: no image for "
                                         r"platform linux/s390x \(available: linux/amd64, "
                                         r"linux/arm64; choose with --platform\)$"):
        follow(blobs.start(index), blobs.fetch, "linux/s390x", "IMG")


def test_an_index_without_platforms_gives_its_first_image() -> None:
    blobs = Blobs()
    index = blobs.put({"manifests": [{"mediaType": "application/vnd.in-toto+json",
                                      "digest": "sha256:" + "0" * 64},
                                     image(blobs, 2, "a"), image(blobs, 1, "b")]})
    assert len(follow(blobs.start(index), blobs.fetch, "linux/amd64", "I").manifest.layers) == 2
    empty = blobs.put({"manifests": [42]}, OCI_INDEX)
    with pytest.raises(ImageError, match=r"^I: index sha256:[0-9a-f]{64} lists no image "
                                         r"manifests$"):
        follow(blobs.start(empty), blobs.fetch, "linux/amd64", "I")


def nested(blobs: Blobs, depth: int) -> dict:
    descriptor = image(blobs, 1)
    for _ in range(depth):
        descriptor = blobs.put({"manifests": [descriptor]}, OCI_INDEX, )
    return descriptor


def test_one_nesting_limit() -> None:
    blobs = Blobs()
    deepest = nested(blobs, MAX_NESTING - 1)
    assert follow(blobs.start(deepest), blobs.fetch, "linux/amd64", "I").manifest.layers
    blobs.fetched.clear()
    with pytest.raises(ImageError, match=r"^I: image indexes nested too deeply$"):
        follow(blobs.start(nested(blobs, MAX_NESTING)), blobs.fetch, "linux/amd64", "I")
    assert len(blobs.fetched) == MAX_NESTING + 1  # the start, then one fetch per index


def test_a_cycle_ends() -> None:
    blobs = Blobs()
    fake = "sha256:" + "c" * 64  # an index naming itself (its content cannot hash to it)
    blobs.data[fake] = json.dumps({"manifests": [{"mediaType": OCI_INDEX, "digest": fake}]}
                                  ).encode()
    start = blobs.fetch(Descriptor.decode({"mediaType": OCI_INDEX, "digest": fake}, "s"), "m")
    with pytest.raises(ImageError, match=r"index sha256:c{64} refers back to itself"):
        follow(start, blobs.fetch, "linux/amd64", "I")


def test_manifest_and_config_must_agree() -> None:
    blobs = Blobs()
    config = blobs.put({"rootfs": {"diff_ids": ["sha256:" + "1" * 64]}})
    manifest = blobs.put({"config": config, "layers": [config, config]}, OCI_MANIFEST)
    with pytest.raises(ImageError, match=r"^I: manifest lists 2 layers, config 1 DiffIDs$"):
        resolve(blobs.start(manifest), blobs.fetch, "linux/amd64", "I")
    odd = blobs.put({"config": config, "layers": []}, "application/vnd.example+json")
    with pytest.raises(ImageError, match=r"^I: unsupported manifest type "
                                         r"application/vnd\.example\+json$"):
        resolve(blobs.start(odd), blobs.fetch, "linux/amd64", "I")
    not_json = blobs.put("x")
    blobs.data[not_json["digest"]] = b"{"
    with pytest.raises(ImageError, match=r"^I: sha256:[0-9a-f]{64} is not valid JSON"):
        resolve(blobs.start(not_json), blobs.fetch, "linux/amd64", "I")
