"""What a mount is, decided in one place: from what the user typed to a :class:`MountPlan`.

The front ends (``layerfs mount`` and mount(8) through it, ``layerfs-overlay``,
``layerfs run``/``shell``) and the commands that read an image without mounting
it (explore, browse, inspect) parse their own syntax and hand the result here:

* :func:`open_image` / :func:`read_image`: an image spec (a path, a
  containers-transports(5) name such as ``oci:DIR:TAG``, or a registry reference
  ``docker://``/``oci://``) with ``--format``, ``--image``, ``--platform``, the
  layer cache and the registry options becomes an :class:`~layerfs.images.Image`
  (or, for inspect, an :class:`~layerfs.images.plan.ImagePlan`). This is the only
  place that chooses between :mod:`layerfs.images` (local forms) and
  :mod:`layerfs.registry` (pulls, lazy mounts).
* :func:`plan_mount` and :func:`plan_overlay_mount` add the upper and work dirs,
  read-only, ``-o`` options and the engine, check what is a usage error, and
  return a :class:`MountPlan`: the layers, which index serves them
  (:class:`IndexKind`), the upper, and the options for
  :func:`layerfs.mount.serve`. Nothing is mounted or created until
  :meth:`MountPlan.open`.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .deferred import DeferredIndex, PendingLayers
from .errors import UsageError
from .idmap import IDENTITY, IdMap, build_id_map
from .images import Image, transport
from .images import open_image as open_local_image
from .images import read_image as read_local_image
from .images.layerdirs import open_explicit_layers
from .images.plan import ImagePlan
from .index import PathIndex
from .layer import Layer
from .options import MountOptions
from .overlay_defaults import read_defaults
from .registry.pull import RemoteOptions
from .registry.source import open_remote, read_remote
from .unpack import LayerCache
from .unpack.limits import UnpackLimits
from .upper import default_workdir, open_writable

if TYPE_CHECKING:
    from .upper import Upper


# -- the image ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRequest:
    """An image as named on a command line, with the options that say how to open it."""

    spec: str
    """A path, a transport name (``oci:DIR:TAG``) or a registry reference (``docker://``)."""
    form: str | None = None
    """``--format``: None to detect it."""
    image_ref: str | None = None
    """``--image``: which image of a store or archive."""
    platform: str | None = None
    cache_dir: str | None = None
    limits: UnpackLimits | None = None
    """Unpack limits (None: from the environment)."""
    quiet: bool = False
    """No progress display."""
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    """Registry options (only a registry reference uses them)."""

    @property
    def is_remote(self) -> bool:
        return transport.is_remote(self.spec)

    def cache(self) -> LayerCache:
        return LayerCache(self.cache_dir, limits=self.limits)


def open_image(request: ImageRequest) -> Image:
    """The image's layers as directories: a local image's tar layers unpacked into the
    layer cache, a registry image pulled (or, with ``remote.lazy``, opened lazily: then
    ``Image.pending`` holds the layers still arriving)."""
    if request.is_remote:
        return open_remote(request.spec, platform=request.platform, cache=request.cache(),
                           quiet=request.quiet, options=request.remote)
    return open_local_image(request.spec, request.form, image_ref=request.image_ref,
                            platform=request.platform, cache=request.cache(),
                            quiet=request.quiet)


def read_image(request: ImageRequest) -> ImagePlan:
    """What the image consists of, without unpacking or pulling a layer (a registry
    image: its manifest and config alone)."""
    if request.is_remote:
        return read_remote(request.spec, platform=request.platform, options=request.remote)
    return read_local_image(request.spec, request.form, image_ref=request.image_ref,
                            platform=request.platform)


def present_layers(image: Image, *, quiet: bool = False) -> list[Layer]:
    """The image's layers once all are on disk (a lazy image's pending ones waited for)."""
    return image.layers if image.pending is None else image.pending.wait(quiet=quiet)


# -- the mount ---------------------------------------------------------------------------

class IndexKind(enum.Enum):
    """Which index serves the mount."""

    LAYERS = "layers"
    """A :class:`PathIndex` of the layers: read-only."""
    DEFERRED = "deferred"
    """A :class:`DeferredIndex`: live at once, its files once the pending layers are
    there (a lazy registry mount, read-only)."""
    UPPER = "upper"
    """The layers under an upper dir, through :func:`layerfs.upper.open_writable`:
    writable (an :class:`Upper`), or with ``-o ro`` the upper as a read-only top layer."""


@dataclass
class MountPlan:
    """A mount, decided: what :meth:`open` builds and :func:`layerfs.mount.serve` serves."""

    layers: list[Layer]
    """Bottom first, without the upper; with ``pending``, not all present yet."""
    kind: IndexKind
    pending: PendingLayers | None = None
    upperdir: str | None = None
    workdir: str | None = None
    """None: beside the upper dir (:func:`layerfs.upper.default_workdir`)."""
    read_only: bool = False
    userxattr: bool | None = None
    """True: ``user.overlay.*`` xattrs; None: as the caller's privileges allow."""
    redirect_dir: str | None = None
    index: bool = False
    """``index=on``: hard-linked lower files copied up through the kernel's inode index."""
    volatile: bool = False
    fuse_options: set[str] = field(default_factory=set)
    engine: str | None = None
    ids: IdMap = IDENTITY
    xattrs: str = "auto"
    """``-o xattrs=auto|on|off`` (see :class:`layerfs.options.MountOptions`)."""
    fsname: str = "layerfs"
    subtype: str = "layerfs"
    quiet: bool = False

    def dirs_made(self) -> list[str]:
        """The dirs :meth:`open` would create (outermost first), to remove when the
        mount fails: what a failed mount leaves must be what was there."""
        if self.kind is not IndexKind.UPPER or self.read_only:
            return []
        assert self.upperdir is not None
        workdir = self.workdir or default_workdir(self.upperdir)
        made = [workdir, os.path.join(workdir, "work")]
        if self.index:
            made.append(os.path.join(workdir, "index"))
        return [path for path in made if not os.path.lexists(path)]

    def open(self) -> tuple[PathIndex | DeferredIndex, Upper | None]:
        """The index to serve, and the :class:`Upper` that writes it (None when
        read-only). Prepares the upper and work dirs as the kernel does."""
        if self.kind is IndexKind.DEFERRED:
            assert self.pending is not None
            return DeferredIndex(self.pending), None
        layers = self.layers if self.pending is None else self.pending.wait(quiet=self.quiet)
        if self.kind is IndexKind.LAYERS:
            return PathIndex(layers), None
        assert self.upperdir is not None
        return open_writable(layers, self.upperdir, self.workdir, userxattr=self.userxattr,
                             redirect_dir=self.redirect_dir, volatile=self.volatile,
                             read_only=self.read_only, index=self.index)

    def serve_options(self) -> dict:
        """The keyword arguments of :func:`layerfs.mount.serve` this plan decides."""
        return {"extra_options": set(self.fuse_options), "engine": self.engine,
                "ids": self.ids, "xattrs": self.xattrs, "fsname": self.fsname,
                "subtype": self.subtype}


def mount_source(image: str | None) -> str:
    """The mount's source in /proc/mounts and findmnt: the image as the user named it
    (``layerfs`` for explicit layers), escaped for the FUSE option string."""
    text = image or "layerfs"
    return text.replace("\\", "\\\\").replace(",", "\\,")


def plan_mount(image: ImageRequest | None, options: MountOptions, *,
               layers: list[str] = (), upper: str | None = None, work: str | None = None,
               engine: str | None = None, as_me: bool = False) -> MountPlan:
    """``layerfs mount``: IMAGE (or ``--layer`` dirs, or ``-o lowerdir=``), an upper dir
    from ``--upper``/``--work`` or ``-o upperdir=/workdir=``, the ``-o`` options and
    ``--engine``. Usage errors are raised before the image is opened."""
    if layers and options.lowerdirs:
        raise UsageError("give layers either with --layer or with -o lowerdir=, not both")
    explicit = list(layers) or options.lowerdirs
    if explicit and image is not None:
        raise UsageError("with --layer or -o lowerdir= give only the MOUNTPOINT")
    if not explicit and image is None:
        raise UsageError("mount needs IMAGE and MOUNTPOINT")
    if upper and options.upperdir or work and options.workdir:
        raise UsageError("give the upper dir either with --upper/--work or with -o "
                         "upperdir=/workdir=, not both")
    upperdir = upper or options.upperdir
    workdir = work or options.workdir
    if workdir and not upperdir:
        raise UsageError("a work dir needs an upper dir (--upper or -o upperdir=)")
    if options.upperdir and not options.workdir:
        raise UsageError("-o upperdir= needs -o workdir= (as the kernel overlay)")
    if options.index and options.userxattr:
        raise UsageError("-o index=on: not with userxattr (as the kernel overlay)")
    ids = build_id_map(options.ids, as_me=as_me)  # rootless: owners shown
    opened = open_explicit_layers(list(explicit)) if explicit else open_image(image)
    if upperdir:
        kind = IndexKind.UPPER
    elif opened.pending is not None:  # live now, its files once the layers are there
        kind = IndexKind.DEFERRED
    else:
        kind = IndexKind.LAYERS
    return MountPlan(layers=opened.layers, kind=kind, pending=opened.pending,
                     upperdir=upperdir, workdir=workdir, read_only=options.read_only,
                     userxattr=True if options.userxattr else None,
                     redirect_dir=options.redirect_dir, index=bool(options.index),
                     volatile=options.volatile,
                     fuse_options=set(options.fuse), engine=engine or options.engine,
                     ids=ids, xattrs=options.xattrs,
                     fsname=mount_source(image.spec if image is not None else None),
                     quiet=image.quiet if image is not None else False)


def plan_overlay_mount(options: MountOptions, *, flags: set[str] = frozenset(),
                       source: str, subtype: str) -> MountPlan:
    """``layerfs-overlay``: the kernel overlay's ``-o`` options alone, as ``mount -t
    overlay`` takes them. ``flags`` are generic mount flags FUSE applies. As root the
    mount is for everyone (``allow_other``), and ``redirect_dir=`` defaults to the
    overlay module's parameter, as the kernel's would."""
    if not options.lowerdirs:
        raise UsageError("no lowerdir= given")
    if options.upperdir and not options.workdir and not options.read_only:
        raise UsageError("upperdir= needs workdir=")
    layers = open_explicit_layers(list(options.lowerdirs)).layers
    redirect_dir = options.redirect_dir
    if redirect_dir is None and not options.userxattr and os.geteuid() == 0:
        # As mount -t overlay: the module's default (with userxattr, as
        # unprivileged, the kernel makes no redirects at all).
        redirect_dir = read_defaults().redirect_dir
    if options.index and options.userxattr:
        raise UsageError("index=on: not with userxattr (as the kernel overlay)")
    index = options.index
    if index is None and not options.userxattr and os.geteuid() == 0:
        index = read_defaults().index  # the module's default, as the kernel's
    fuse = set(options.fuse) | set(flags)
    if os.geteuid() == 0:
        fuse.add("allow_other")
    return MountPlan(layers=layers, kind=IndexKind.UPPER if options.upperdir
                     else IndexKind.LAYERS,
                     upperdir=options.upperdir, workdir=options.workdir,
                     read_only=options.read_only,
                     userxattr=True if options.userxattr else None,
                     redirect_dir=redirect_dir, index=bool(index), volatile=options.volatile,
                     fuse_options=fuse, engine=options.engine,
                     ids=build_id_map(options.ids), xattrs=options.xattrs, fsname=source,
                     subtype=subtype)


def plan_namespace_mount(layers: list[Layer], options: MountOptions, *,
                         upper: str | None, work: str | None, ids: IdMap) -> MountPlan:
    """``layerfs run``/``shell``: the image's layers (all present) mounted inside a user
    namespace. Only the ``user.*`` xattr namespace is writable there: an upper dir is
    in the kernel's userxattr format (and follows its redirect_dir rule)."""
    return MountPlan(layers=layers, kind=IndexKind.UPPER if upper else IndexKind.LAYERS,
                     upperdir=upper, workdir=work, read_only=options.read_only,
                     userxattr=True, redirect_dir=options.redirect_dir,
                     volatile=options.volatile, fuse_options=set(options.fuse),
                     engine=options.engine, ids=ids, xattrs=options.xattrs)
