"""Which form an image is in (FORMATS.md section 0), and opening it.

FORMS maps a ``--format`` name to (detector, reader), in the order of
FORMATS.md section 0: detection tries them in table order and the first
match wins, as several forms share files. A tar file given instead of a
directory is read in place (row 10) by the same readers.

A Docker data root can hold images in two stores: the overlay2 graph driver
(``image/overlay2``) and containerd's store (``containerd/daemon``, namespace
``moby``; Docker >= 29's default). dockerd always creates the latter's
directories, and uses one store at a time, so detection looks in both: the
store that holds images (or the named image) is used; an image found in
both is taken from containerd when it is the same image (same config) and
is ambiguous otherwise (choose with ``--format docker-root`` or
``--format containerd``).

An image spec is a path, optionally followed by ``:REFERENCE`` naming one
image of a store or archive (``/var/lib/docker:nginx:latest``,
``layout-dir:tag``), or a containers-transports(5) name (``oci:DIR:TAG``,
``containers-storage:REF``, ...: :mod:`.transport`); ``--image REF`` says the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ImageError, UsageError
from ..unpack import LayerCache
from . import transport
from .containerd import image_count as containerd_image_count
from .containerd import is_containerd, read_containerd
from .containersstorage import (
    is_containers_storage,
    is_containers_storage_vfs,
    read_containers_storage,
    read_containers_storage_vfs,
)
from .dockerlegacy import is_docker_legacy, read_docker_legacy
from .dockerroot import image_count as overlay2_image_count
from .dockerroot import is_docker_root, read_docker_root
from .dockersave import is_docker_save, is_docker_save_oci, read_docker_save, read_docker_save_oci
from .files import ImageFiles, open_files
from .image import Image
from .layerdirs import is_layer_dirs, open_layer_dirs
from .oci import is_oci_layout, read_oci
from .plan import ImagePlan, LayerSource, materialize
from .skopeodir import is_skopeo_dir, read_skopeo_dir

Detector = Callable[[ImageFiles], bool]
Reader = Callable[[ImageFiles, "str | None", "str | None"], ImagePlan]


def _looks_like_docker_root(files: ImageFiles) -> bool:
    return not files.is_archive and all(files.is_dir(name)
                                        for name in ("containers", "volumes", "network"))


def _is_layer_dirs(files: ImageFiles) -> bool:
    return not files.is_archive and is_layer_dirs(files.path) \
        and not _looks_like_docker_root(files)


def _read_layer_dirs(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    if ref is not None:
        raise ImageError(f"{files.where}: a directory of layers holds one image; drop ':{ref}'")
    image = open_layer_dirs(files.path)
    sources = [LayerSource(label=layer.label, directory=layer.root) for layer in image.layers]
    return ImagePlan(layers=sources, name=image.name, form=image.form)


FORMS: dict[str, tuple[Detector, Reader]] = {
    "docker-root": (is_docker_root, read_docker_root),
    "containers-storage": (is_containers_storage, read_containers_storage),
    "containers-storage-vfs": (is_containers_storage_vfs, read_containers_storage_vfs),
    "containerd": (is_containerd, read_containerd),
    "docker-save-oci": (is_docker_save_oci, read_docker_save_oci),
    "oci": (is_oci_layout, read_oci),
    "docker-save": (is_docker_save, read_docker_save),
    "docker-save-legacy": (is_docker_legacy, read_docker_legacy),
    "skopeo-dir": (is_skopeo_dir, read_skopeo_dir),
    "layer-dirs": (_is_layer_dirs, _read_layer_dirs),
}


def read_image(spec: str, form: str | None = None, *, image_ref: str | None = None,
               platform: str | None = None) -> ImagePlan:
    """What the image ``spec`` (a path or a containers-transports(5) name, see
    :mod:`.transport`) consists of, without unpacking anything."""
    name = transport.parse(spec)
    path, ref = name.path, name.ref
    if image_ref is not None:
        if ref is not None and ref != image_ref:
            raise UsageError(f"the image is named twice: '{ref}' in {spec} and --image {image_ref}")
        ref = image_ref
    if name.transport is None:
        return _read(spec, path, ref, form, platform)
    if form is not None and form not in name.forms:
        raise UsageError(f"--format {form}: {name.transport}: takes only "
                         f"{', '.join(name.forms)}")
    try:
        return _read(spec, path, ref, form, platform, name.forms,
                     transport.TRANSPORTS[name.transport][1])
    except ImageError as exc:
        message = str(exc)
        if message.startswith(f"{name.transport}:"):
            raise
        raise ImageError(f"{name.transport}:{message}") from None


def _read(spec: str, path: Path, ref: str | None, form: str | None, platform: str | None,
          allowed: tuple[str, ...] | None = None, what: str = "") -> ImagePlan:
    files = open_files(path)
    if allowed is not None and form is None:
        form = next((name for name in allowed if FORMS[name][0](files)), None)
        if form is None:
            raise ImageError(f"{path}: not a {what}")
    if form is not None:
        if form not in FORMS:
            raise UsageError(f"--format {form}: unknown format; known: {', '.join(FORMS)}")
        return FORMS[form][1](files, ref, platform)
    for name, (detector, reader) in FORMS.items():
        if detector(files):
            return _AUTO_READERS.get(name, reader)(files, ref, platform)
    if _looks_like_docker_root(files):
        raise ImageError(f"{spec}: a Docker data root without an image store of its own; "
                         "with the containerd image store dockerd normally uses the system's "
                         "containerd: mount /var/lib/containerd:moby/NAME instead")
    raise ImageError(f"{spec}: not a recognised image (expected one of: {', '.join(FORMS)})")


def _read_docker_data_root(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    """A Docker root found by detection: its overlay2 store, its containerd store, or both."""
    try:
        in_containerd = containerd_image_count(files)
    except ImageError:  # an unreadable containerd store must not hide the overlay2 images
        in_containerd = 0
    if not in_containerd:
        return read_docker_root(files, ref, platform)
    if not overlay2_image_count(files.path):
        return read_containerd(files, ref, platform)
    plans: dict[str, ImagePlan] = {}
    failures: list[str] = []
    for form, reader in (("containerd", read_containerd), ("overlay2", read_docker_root)):
        try:
            plans[form] = reader(files, ref, platform)
        except ImageError as exc:
            failures.append(f"{form} store: {str(exc).removeprefix(files.where + ': ')}")
    if len(plans) == 1:
        return next(iter(plans.values()))
    if not plans:
        raise ImageError(f"{files.where}: a Docker root with two image stores; "
                         + "; ".join(failures))
    if plans["containerd"].config == plans["overlay2"].config:
        return plans["containerd"]
    raise ImageError(f"{files.where}: '{ref or ''}' names different images in the overlay2 "
                     f"store ({plans['overlay2'].name}) and the containerd store "
                     f"({plans['containerd'].name}); choose with --format docker-root "
                     "or --format containerd")


_AUTO_READERS: dict[str, Reader] = {"docker-root": _read_docker_data_root}


def open_image(spec: str, form: str | None = None, *, image_ref: str | None = None,
               platform: str | None = None, cache: LayerCache | None = None,
               quiet: bool = False) -> Image:
    """Open the image at ``spec`` (a path or a containers-transports(5) name) as
    directory layers, unpacking tar layers into the cache. Registry images
    (``docker://``) are not read here: :func:`layerfs.mountplan.open_image` takes both."""
    plan = read_image(spec, form, image_ref=image_ref, platform=platform)
    return materialize(plan, cache, quiet=quiet)
