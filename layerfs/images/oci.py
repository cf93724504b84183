"""OCI image layout, as a directory or an ``oci-archive`` tar (FORMATS.md section 2).

``index.json`` -> (nested indexes, by platform) -> image manifest -> config
and layer blobs under ``blobs/<alg>/<hex>``. A tag is chosen with
``image-dir:tag`` / ``--image``; without one the single image is taken.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ImageError
from ..layer import LayerFacts
from ..unpack import LayerBlob
from .config import layer_history
from .files import ImageFiles
from .manifests import (
    blob_name,
    image_entries,
    layer_diff_ids,
    manifest_parts,
    pick_platform,
    read_blob_json,
    resolve_manifest,
)
from .plan import ImagePlan, LayerSource, layer_label
from .platform import host_platform
from .reference import Candidate, select

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def is_oci_layout(files: ImageFiles) -> bool:
    return files.exists("oci-layout") and files.is_dir("blobs")


def usable_manifests(files: ImageFiles) -> list[dict]:
    index = files.read_json("index.json", "index.json")
    if not isinstance(index, dict):
        raise ImageError(f"{files.where}: index.json is not a JSON object")
    return image_entries(index, f"{files.where}: index.json")


def read_oci(files: ImageFiles, ref: str | None, platform: str | None,
             form: str = "oci") -> ImagePlan:
    manifests = usable_manifests(files)
    if not manifests:
        raise ImageError(f"{files.where}: index.json lists no image manifests")
    wanted_platform = platform or host_platform()
    one_image = len({tuple(_candidate(m).names) for m in manifests}) == 1
    if ref is None and len(manifests) > 1 and one_image and all("platform" in m for m in manifests):
        # index.json itself lists the platforms of one image (skopeo copy --all)
        descriptor = pick_platform(manifests, wanted_platform, files.where, "index.json")
    else:
        candidates = [_candidate(m) for m in manifests]
        descriptor = select(candidates, ref, files.where).item
    manifest, digest = resolve_manifest(files, descriptor, wanted_platform)
    return _plan(files, manifest, digest, _name_of(descriptor), form)


def _candidate(descriptor: dict) -> Candidate[dict]:
    annotations = descriptor.get("annotations") or {}
    names = [str(annotations[key]) for key in (REF_NAME, CONTAINERD_NAME)
             if annotations.get(key)]
    return Candidate(descriptor, names=names, digests=[str(descriptor.get("digest", ""))])


def _name_of(descriptor: dict) -> str:
    names = _candidate(descriptor).names
    return names[-1] if names else str(descriptor.get("digest", ""))


def _plan(files: ImageFiles, manifest: dict, manifest_digest: str, name: str,
          form: str) -> ImagePlan:
    config_descriptor, layer_descriptors = manifest_parts(
        manifest, f"{files.where}: manifest {manifest_digest}")
    config = read_blob_json(files, config_descriptor["digest"], "config")
    diff_ids = layer_diff_ids(config, layer_descriptors, files.where)
    layers = blob_layers(files, layer_descriptors, diff_ids, config,
                         lambda digest: blob_name(digest, files.where))
    return ImagePlan(layers=layers, name=name, form=form, config=config,
                     source=str(files.path), digest=manifest_digest,
                     manifest=files.read_bytes(blob_name(manifest_digest, files.where)))


def blob_layers(files: ImageFiles, descriptors: list[dict], diff_ids: list[str], config: dict,
                member_of: Callable[[str], str]) -> list[LayerSource]:
    """The layers of a manifest, tar blobs stored in the image as files ``member_of(digest)``."""
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (descriptor, diff_id) in enumerate(zip(descriptors, diff_ids, strict=True)):
        digest = str(descriptor.get("digest", ""))
        layers.append(tar_layer_source(files, member_of(digest), position, digest, diff_id,
                                       history[position], descriptor.get("size"),
                                       descriptor.get("mediaType", "")))
    return layers


def tar_layer_source(files: ImageFiles, member: str, position: int, blob_digest: str,
                     diff_id: str, created_by: str, size: int | None = None,
                     media_type: str = "", v1_id: str = "") -> LayerSource:
    """A tar layer stored as file ``member`` of an image."""
    label = layer_label(position, diff_id or blob_digest)
    if size is None:
        try:
            size = files.size(member)
        except (OSError, ImageError):
            size = None
    blob = LayerBlob(label=label, open=lambda: files.open(member), blob_digest=blob_digest,
                     diff_id=diff_id, size=size)
    facts = LayerFacts(blob=member, blob_digest=blob_digest, blob_size=size,
                       media_type=media_type, v1_id=v1_id)
    return LayerSource(label=label, diff_id=diff_id, created_by=created_by, blob=blob,
                       facts=facts)
