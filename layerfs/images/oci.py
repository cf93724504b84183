"""OCI image layout, as a directory or an ``oci-archive`` tar (FORMATS.md section 2).

``index.json`` -> (nested indexes, by platform) -> image manifest -> config
and layer blobs under ``blobs/<alg>/<hex>``, read and checked by
:class:`layerfs.oci.layout.Layout`. A tag is chosen with ``image-dir:tag`` /
``--image``; without one the single image is taken. This module turns the
image into layers (shared with the other manifest-plus-blobs forms).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ImageError
from ..layer import LayerFacts
from ..oci.layout import Layout, blob_name
from ..oci.mediatypes import CONTAINERD_NAME, REF_NAME
from ..oci.model import Descriptor, Index
from ..oci.platform import host_platform
from ..oci.resolve import Image, choose
from ..unpack import LayerBlob
from .files import ImageFiles
from .plan import ImagePlan, LayerSource, layer_label
from .reference import Candidate, select


def is_oci_layout(files: ImageFiles) -> bool:
    return Layout.is_layout(files)


def usable_manifests(files: ImageFiles) -> list[Descriptor]:
    return Layout(files).images()


def read_oci(files: ImageFiles, ref: str | None, platform: str | None,
             form: str = "oci") -> ImagePlan:
    layout = Layout(files)
    manifests = layout.images()
    if not manifests:
        raise ImageError(f"{files.where}: index.json lists no image manifests")
    wanted_platform = platform or host_platform()
    one_image = len({tuple(_candidate(m).names) for m in manifests}) == 1
    if ref is None and len(manifests) > 1 and one_image and \
            all(m.platform is not None for m in manifests):
        # index.json itself lists the platforms of one image (skopeo copy --all)
        descriptor = choose(Index(tuple(manifests)), wanted_platform,
                            f"{files.where}: index.json")
    else:
        candidates = [_candidate(m) for m in manifests]
        descriptor = select(candidates, ref, files.where).item
    image = layout.resolve(descriptor, wanted_platform)
    return _plan(files, image, _name_of(descriptor), form)


def _candidate(descriptor: Descriptor) -> Candidate[Descriptor]:
    names = [descriptor.annotations[key] for key in (REF_NAME, CONTAINERD_NAME)
             if descriptor.annotations.get(key)]
    return Candidate(descriptor, names=names, digests=[descriptor.digest])


def _name_of(descriptor: Descriptor) -> str:
    names = _candidate(descriptor).names
    return names[-1] if names else descriptor.digest


def _plan(files: ImageFiles, image: Image, name: str, form: str) -> ImagePlan:
    layers = blob_layers(files, image, lambda digest: blob_name(digest, files.where))
    return ImagePlan(layers=layers, name=name, form=form, config=dict(image.config.raw),
                     source=str(files.path), digest=image.document.digest,
                     manifest=image.document.data)


def blob_layers(files: ImageFiles, image: Image,
                member_of: Callable[[str], str]) -> list[LayerSource]:
    """The layers of an image, tar blobs stored in it as files ``member_of(digest)``."""
    return [tar_layer_source(files, member_of(descriptor.digest), position, descriptor.digest,
                             diff_id, created_by, descriptor.size, descriptor.media_type)
            for position, (descriptor, diff_id, created_by) in enumerate(zip(
                image.manifest.layers, image.config.diff_ids, image.config.created_by,
                strict=True))]


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
