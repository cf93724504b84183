"""Image names as the user types them: containers-transports(5) and plain paths.

skopeo, podman and buildah users name an image with a transport prefix; layerfs
takes the same names wherever an IMAGE is taken (every command reads images
through :func:`layerfs.images.detect.read_image`, which calls :func:`parse`):

- ``oci:DIR[:REF]`` and ``oci-archive:PATH[:REF]``: an OCI layout, dir or tar;
- ``docker-archive:PATH[:REF]``: a ``docker save`` archive (any generation);
- ``dir:PATH``: a skopeo ``dir:`` copy;
- ``containers-storage:[[DRIVER@]ROOT[+RUNROOT][:OPTIONS]]REF``: a podman store,
  by default the user's (``/var/lib/containers/storage`` as root,
  ``~/.local/share/containers/storage`` otherwise, or storage.conf's ``graphroot``);
- ``docker://REF`` (and ``oci://``): a registry image, not read here:
  :mod:`layerfs.mountplan` sends it to :mod:`layerfs.registry.source`.

Without a known prefix (or when a file of that very name exists) the spec is a path,
optionally followed by ``:REFERENCE`` (the longest existing path wins) and the form
is detected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError

REMOTE_PREFIXES = ("docker://", "oci://")

# transport: (the forms it allows, in detection order; what its path is, for errors)
TRANSPORTS: dict[str, tuple[tuple[str, ...], str]] = {
    "oci": (("oci",), "OCI layout directory"),
    "oci-archive": (("oci",), "OCI archive"),
    "docker-archive": (("docker-save-oci", "docker-save", "docker-save-legacy"),
                       "docker save archive"),
    "dir": (("skopeo-dir",), "skopeo dir: directory"),
    "containers-storage": (("containers-storage", "containers-storage-vfs"),
                           "containers-storage store"),
}
_DRIVER_FORMS = {"overlay": "containers-storage", "vfs": "containers-storage-vfs"}


@dataclass(frozen=True)
class ImageName:
    text: str
    """As typed."""
    path: Path
    ref: str | None = None
    transport: str | None = None
    """None for a plain path."""
    forms: tuple[str, ...] | None = None
    """The forms the transport allows (None: any, detected)."""


def is_remote(spec: str) -> bool:
    return spec.startswith(REMOTE_PREFIXES)


def transport_of(spec: str) -> str | None:
    """The containers-transports(5) prefix ``spec`` starts with, if it is one layerfs reads
    from disk and no file is named with the prefix (``oci:odd``, ``oci:odd:TAG``)."""
    prefix, colon, _rest = spec.partition(":")
    if not colon or prefix not in TRANSPORTS:
        return None
    try:
        path, _ref = split_path(spec, spec)
    except ImageError:
        return prefix
    return None if len(str(path)) > len(prefix) + 1 else prefix


def parse(spec: str) -> ImageName:
    """The path, reference and allowed forms ``spec`` names (not a registry reference)."""
    transport = transport_of(spec)
    if transport is None:
        path, ref = split_path(spec, spec)
        return ImageName(spec, path, ref)
    rest = spec[len(transport) + 1:]
    forms, what = TRANSPORTS[transport]
    if transport == "containers-storage":
        return _containers_storage(spec, rest)
    if not rest:
        raise ImageError(f"{spec}: {transport}: needs a path")
    try:
        path, ref = split_path(rest, spec)
    except ImageError:
        shown = rest.partition(":")[0] if transport != "dir" else rest
        raise ImageError(f"{transport}:{shown}: no such {what}") from None
    if transport == "dir" and ref is not None:
        raise ImageError(f"{spec}: a skopeo dir: holds one image; drop ':{ref}'")
    return ImageName(spec, path, ref, transport, forms)


def split_path(spec: str, shown: str) -> tuple[Path, str | None]:
    """(path, reference) of ``PATH[:REFERENCE]``; the longest existing path wins."""
    if os.path.lexists(spec):
        return Path(spec), None
    positions = [i for i, char in enumerate(spec) if char == ":"]
    for position in reversed(positions):
        if position and os.path.lexists(spec[:position]):
            return Path(spec[:position]), spec[position + 1:] or None
    raise ImageError(f"{shown}: no such image (file or directory)")


def _containers_storage(spec: str, rest: str) -> ImageName:
    driver = None
    if rest.startswith("["):
        specifier, closed, ref = rest[1:].partition("]")
        if not closed:
            raise ImageError(f"{spec}: containers-storage: '[' without ']' "
                             "(expected [[DRIVER@]ROOT]REF)")
        driver, at, root = specifier.partition("@")
        if not at:
            driver, root = None, specifier
        root = root.partition("+")[0].partition(":")[0]  # the run root and options: unused
        if not root:
            raise ImageError(f"{spec}: containers-storage: empty store root in [...]")
    else:
        ref = rest
        root, configured_driver = default_store()
        driver = configured_driver
    forms = TRANSPORTS["containers-storage"][0]
    if driver:
        if driver not in _DRIVER_FORMS:
            raise ImageError(f"{spec}: containers-storage: driver '{driver}' is not read "
                             f"(known: {', '.join(_DRIVER_FORMS)})")
        forms = (_DRIVER_FORMS[driver],)
    if not ref:
        raise ImageError(f"{spec}: containers-storage: needs an image (NAME[:TAG] or ID)")
    if not os.path.isdir(root):
        raise ImageError(f"containers-storage:[{root}]: no such store (directory)")
    return ImageName(spec, Path(root), ref, "containers-storage", forms)


def default_store() -> tuple[str, str | None]:
    """(graph root, driver) of the user's containers-storage, as podman finds it: the
    storage.conf in use (``$CONTAINERS_STORAGE_CONF``; as a user
    ``$XDG_CONFIG_HOME/containers/storage.conf``; ``/etc/containers/storage.conf``), else
    the defaults."""
    if os.geteuid() == 0:
        root = "/var/lib/containers/storage"
        candidates = ["/etc/containers/storage.conf", "/usr/share/containers/storage.conf"]
    else:
        data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        root = os.path.join(data, "containers", "storage")
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        candidates = [os.path.join(config, "containers", "storage.conf")]
    if os.environ.get("CONTAINERS_STORAGE_CONF"):
        candidates = [os.environ["CONTAINERS_STORAGE_CONF"]]
    for candidate in candidates:
        settings = _storage_conf(candidate)
        if settings is not None:
            root = os.path.expanduser(settings.get("graphroot") or root)
            return root, settings.get("driver") or None
    return root, None


def _storage_conf(path: str) -> dict | None:
    """The ``[storage]`` table of a storage.conf, or None when there is none to read."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the defaults
        return None
    try:
        with open(path, "rb") as conf:
            table = tomllib.load(conf).get("storage", {})
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read ({exc})") from None
    return table if isinstance(table, dict) else None


def absolute(spec: str) -> str:
    """``spec`` with its path made absolute (against the working directory now) and the
    rest kept; a registry reference or a spec naming nothing is returned as it is."""
    if is_remote(spec):
        return spec
    try:
        name = parse(spec)
    except ImageError:
        return spec
    suffix = f":{name.ref}" if name.ref is not None else ""
    if name.transport == "containers-storage":
        if not spec.startswith("containers-storage:["):
            return spec
        specifier = spec[len("containers-storage:["):].partition("]")[0]
        driver, at, _root = specifier.partition("@")
        return f"containers-storage:[{driver + at}{os.path.abspath(name.path)}]{name.ref}"
    prefix = f"{name.transport}:" if name.transport else ""
    return prefix + os.path.abspath(name.path) + suffix
