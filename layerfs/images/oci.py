"""OCI image layout, as a directory or an ``oci-archive`` tar (FORMATS.md section 2).

``index.json`` -> (nested indexes, by platform) -> image manifest -> config
and layer blobs under ``blobs/<alg>/<hex>``. A tag is chosen with
``image-dir:tag`` / ``--image``; without one the single image is taken.
"""

from __future__ import annotations

import hashlib

from ..errors import ImageError
from ..unpack import LayerBlob
from ..unpack.digests import parse_digest
from .config import diff_ids_of, layer_history
from .files import ImageFiles, parse_json
from .plan import ImagePlan, LayerSource, layer_label
from .platform import describe, host_platform, matches
from .reference import Candidate, select
from .shapes import descriptor as checked_descriptor
from .shapes import need_list, need_object

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_MAX_NESTING = 8


def is_oci_layout(files: ImageFiles) -> bool:
    return files.exists("oci-layout") and files.is_dir("blobs")


def blob_name(digest: str, where: str) -> str:
    algorithm, hex_digest = parse_digest(digest, f"{where}: descriptor")
    return f"blobs/{algorithm}/{hex_digest}"


def usable_manifests(files: ImageFiles) -> list[dict]:
    index = files.read_json("index.json", "index.json")
    if not isinstance(index, dict):
        raise ImageError(f"{files.where}: index.json is not a JSON object")
    return _image_entries(index, f"{files.where}: index.json")


def _image_entries(index: dict, where: str) -> list[dict]:
    """The descriptors of an index that lead to images (not attestations, not junk)."""
    manifests = index.get("manifests")
    if manifests is None:  # Docker 25 wrote "manifests": null
        return []
    need_list(manifests, where, "'manifests'")
    return [checked_descriptor(m, where) for m in manifests if isinstance(m, dict)
            and _media_type(m) in INDEX_TYPES | MANIFEST_TYPES | {None}]


def _media_type(document: dict) -> str | None:
    value = document.get("mediaType")
    return value if isinstance(value, str) else None if value is None else "invalid"


def read_oci(files: ImageFiles, ref: str | None, platform: str | None,
             form: str = "oci") -> ImagePlan:
    manifests = usable_manifests(files)
    if not manifests:
        raise ImageError(f"{files.where}: index.json lists no image manifests")
    wanted_platform = platform or host_platform()
    one_image = len({tuple(_candidate(m).names) for m in manifests}) == 1
    if ref is None and len(manifests) > 1 and one_image and all("platform" in m for m in manifests):
        # index.json itself lists the platforms of one image (skopeo copy --all)
        descriptor = _pick_platform(manifests, wanted_platform, files.where, "index.json")
    else:
        candidates = [_candidate(m) for m in manifests]
        descriptor = select(candidates, ref, files.where).item
    manifest, digest = _resolve_manifest(files, descriptor, wanted_platform)
    return _plan(files, manifest, digest, _name_of(descriptor), form)


def _candidate(descriptor: dict) -> Candidate[dict]:
    annotations = descriptor.get("annotations") or {}
    names = [str(annotations[key]) for key in (REF_NAME, CONTAINERD_NAME)
             if annotations.get(key)]
    return Candidate(descriptor, names=names, digests=[str(descriptor.get("digest", ""))])


def _name_of(descriptor: dict) -> str:
    names = _candidate(descriptor).names
    return names[-1] if names else str(descriptor.get("digest", ""))


def _pick_platform(descriptors: list[dict], wanted: str, where: str, what: str) -> dict:
    for descriptor in descriptors:
        if matches(descriptor.get("platform"), wanted):
            return descriptor
    available = ", ".join(describe(d["platform"]) for d in descriptors
                          if isinstance(d.get("platform"), dict))
    raise ImageError(f"{where}: {what} has no image for platform {wanted} "
                     f"(available: {available}; choose with --platform)")


def _resolve_manifest(files: ImageFiles, descriptor: dict, platform: str) -> tuple[dict, str]:
    seen: set[str] = set()
    for _ in range(_MAX_NESTING):
        digest = str(descriptor.get("digest", ""))
        if digest in seen:
            raise ImageError(f"{files.where}: index {digest} refers back to itself (a cycle)")
        seen.add(digest)
        document = _read_blob_json(files, digest, "manifest")
        media_type = _media_type(descriptor) or _media_type(document)
        if media_type in INDEX_TYPES or "manifests" in document:
            entries = _image_entries(document, f"{files.where}: index {digest}")
            if not entries:
                raise ImageError(f"{files.where}: index {digest} lists no image manifests")
            platformed = [m for m in entries if "platform" in m]
            descriptor = _pick_platform(platformed, platform, files.where, f"index {digest}") \
                if platformed else entries[0]
            continue
        return document, digest
    raise ImageError(f"{files.where}: image indexes nested too deeply")


def _read_blob_json(files: ImageFiles, digest: str, what: str) -> dict:
    name = blob_name(digest, files.where)
    try:
        data = files.read_bytes(name)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ImageError(f"{files.where}: {what} blob {digest} is missing ({name})") from None
    except OSError as exc:
        raise ImageError(f"{files.where}: {name}: {exc.strerror or exc}") from None
    verify_blob(data, digest, f"{files.where}: {what} blob {digest}")
    document = parse_json(data, files.where, name)
    if not isinstance(document, dict):
        raise ImageError(f"{files.where}: {what} {digest} is not a JSON object")
    return document


def verify_blob(data: bytes, digest: str, what: str) -> None:
    """Content addressed means checked: a blob must hash to the digest naming it."""
    algorithm, expected = parse_digest(digest, what)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise ImageError(f"{what}: digest mismatch, the content is {algorithm}:{actual}")


def _plan(files: ImageFiles, manifest: dict, manifest_digest: str, name: str,
          form: str) -> ImagePlan:
    where = f"{files.where}: manifest {manifest_digest}"
    config_descriptor = checked_descriptor(need_object(manifest.get("config"), where, "'config'"),
                                           f"{where}: config")
    layer_descriptors = need_list(manifest.get("layers"), where, "'layers'")
    for position, layer in enumerate(layer_descriptors):
        need_object(layer, where, f"layer {position + 1}")
        checked_descriptor(layer, f"{where}: layer {position + 1}")
    config = _read_blob_json(files, config_descriptor["digest"], "config")
    diff_ids = diff_ids_of(config, files.where)
    if len(diff_ids) != len(layer_descriptors):
        raise ImageError(f"{files.where}: manifest lists {len(layer_descriptors)} layers, "
                         f"config {len(diff_ids)} DiffIDs")
    history = layer_history(config, len(diff_ids))
    layers = []
    for position, (descriptor, diff_id) in enumerate(zip(layer_descriptors, diff_ids, strict=True)):
        digest = str(descriptor.get("digest", ""))
        layers.append(tar_layer_source(files, blob_name(digest, files.where), position,
                                       digest, diff_id, history[position],
                                       descriptor.get("size"), descriptor.get("mediaType", "")))
    return ImagePlan(layers=layers, name=name, form=form, config=config,
                     source=str(files.path))


def tar_layer_source(files: ImageFiles, member: str, position: int, blob_digest: str,
                     diff_id: str, created_by: str, size: int | None = None,
                     media_type: str = "") -> LayerSource:
    """A tar layer stored as file ``member`` of an image."""
    label = layer_label(position, diff_id or blob_digest)
    if size is None:
        try:
            size = files.size(member)
        except (OSError, ImageError):
            size = None
    blob = LayerBlob(label=label, open=lambda: files.open(member), blob_digest=blob_digest,
                     diff_id=diff_id, size=size)
    extra = {"blob": member, "blob_digest": blob_digest, "blob_size": size,
             "media_type": media_type}
    return LayerSource(label=label, diff_id=diff_id, created_by=created_by, blob=blob,
                       extra=extra)
