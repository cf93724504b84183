"""Hostile documents straight into the OCI model and the resolver: every one gives a typed
value or one ImageError line, never another exception (the strategies of tests/fuzz)."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from layerfs.errors import ImageError
from layerfs.oci.config import ImageConfig
from layerfs.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from layerfs.oci.model import Descriptor, ImageManifest, Index
from layerfs.oci.resolve import Document, resolve
from tests.fuzz.strategies import FUZZ, JSON, mutated

A = "sha256:" + "a" * 64
MANIFEST = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": A,
                       "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": A,
                        "size": 3}]}
INDEX = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": A, "size": 1,
     "platform": {"os": "linux", "architecture": "amd64"}}]}
CONFIG = {"rootfs": {"type": "layers", "diff_ids": [A]}, "history": [{"created_by": "x"}]}


def decoded_or_clean_error(decode, document: object) -> None:  # noqa: ANN001
    try:
        decode(document, "doc")
    except ImageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("doc")


@FUZZ
@given(document=st.one_of(JSON, mutated(MANIFEST), mutated(INDEX), mutated(CONFIG)))
def test_decoders_answer_or_fail_cleanly(document: object) -> None:
    for decode in (Descriptor.decode, Index.decode, ImageManifest.decode, ImageConfig.decode):
        decoded_or_clean_error(decode, document)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@FUZZ
@given(index=mutated(INDEX), manifest=mutated(MANIFEST), config=mutated(CONFIG),
       platform=st.sampled_from(["linux/amd64", "linux/arm64/v8"]))
def test_the_resolver_answers_or_fails_cleanly(index: object, manifest: object,
                                               config: object, platform: str) -> None:
    """The three documents linked by digest as far as the mutation left their links."""
    config_data = json.dumps(config).encode()
    if isinstance(manifest, dict) and isinstance(manifest.get("config"), dict):
        manifest = {**manifest, "config": {**manifest["config"], "digest": _sha(config_data)}}
    manifest_data = json.dumps(manifest).encode()
    if isinstance(index, dict) and isinstance(index.get("manifests"), list) and \
            index["manifests"] and isinstance(index["manifests"][0], dict):
        index = {**index, "manifests": [{**index["manifests"][0],
                                         "digest": _sha(manifest_data)}]}
    index_data = json.dumps(index).encode()
    blobs = {_sha(data): data for data in (config_data, manifest_data, index_data)}

    def fetch(descriptor: Descriptor, what: str) -> Document:
        if descriptor.digest not in blobs:
            raise ImageError(f"store: {what} {descriptor.digest} is missing")
        return Document(blobs[descriptor.digest], descriptor.media_type, descriptor.digest)
    try:
        image = resolve(Document(index_data, OCI_INDEX, _sha(index_data)), fetch, platform,
                        "img")
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert len(image.manifest.layers) == len(image.config.diff_ids)
