"""The ``layerfs`` command line.

Each subcommand parses its arguments and calls into the library; a
:class:`~layerfs.errors.LayerfsError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .deferred import DeferredIndex
from .errors import LayerfsError, UsageError
from .images import FORMS, Image, open_image, read_image
from .images.inspect import layer_rows, render_json, render_table
from .images.layerdirs import open_explicit_layers
from .index import PathIndex
from .mount import serve, unmount
from .options import parse_options
from .registry.cli import add_remote_arguments, remote_options
from .registry.cli import register as register_registry
from .registry.inventory import list_partials, list_skeletons, prune_registry, render_registry
from .registry.source import is_remote, read_remote
from .unpack import LayerCache
from .unpack.inventory import list_layers, prune, render_layers
from .unpack.limits import UnpackLimits
from .upper import open_writable

EXIT_ERROR = 1
EXIT_USAGE = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerfs",
        description="Mount container image layers as one merged tree, with overlay2 "
                    "semantics, in userspace (FUSE).")
    parser.add_argument("--version", action="version", version=f"layerfs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mount = commands.add_parser(
        "mount", help="mount an image's layers (read-only, or writable with --upper)",
        description="Mount an image's layers, bottom to top, as one tree: read-only, or "
                    "writable with an upper dir in the kernel overlay's format (--upper). "
                    "IMAGE is an OCI layout (dir or oci-archive), a docker save archive, a "
                    "skopeo dir:, a Docker data root, a containerd root or a containers-storage store "
                    "(STORE:NAME:TAG or --image picks one image), or a directory of "
                    "extracted layers (ordered by its 'layers' file, else by name); "
                    "tar layers are unpacked once into the layer cache. Or give the "
                    "layers with --layer (bottom first) or -o lowerdir=TOP:...:BOTTOM "
                    "(the kernel overlay's order).")
    mount.add_argument("image", nargs="?", metavar="IMAGE",
                       help="the image (omit it with --layer or -o lowerdir=)")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT")
    mount.add_argument("--layer", action="append", default=[], metavar="DIR",
                       help="a layer directory; repeat, bottom first")
    mount.add_argument("--upper", metavar="DIR",
                       help="a writable upper dir on top (the kernel overlay's upperdir): "
                            "without it the mount is read-only")
    mount.add_argument("--work", metavar="DIR",
                       help="the work dir for --upper, on the same filesystem "
                            "(default: .NAME.work beside the upper dir)")
    mount.add_argument("-o", dest="options", action="append", default=[], metavar="OPTS",
                       help="comma-separated mount options: lowerdir=TOP:...:BOTTOM, "
                            "upperdir=DIR, workdir=DIR, redirect_dir=on|off, userxattr, "
                            "allow_other; generic mount options (ro, nodev, ...) are accepted")
    _add_image_arguments(mount)
    mount.add_argument("--quiet", "-q", action="store_true",
                       help="no progress display while unpacking layers")
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="stay in the foreground (default: serve from the background)")
    mount.add_argument("--debug", action="store_true",
                       help="log every FUSE request (implies logging to stderr with -f)")
    mount.add_argument("--log", metavar="FILE", help="log to FILE (default: syslog in the "
                                                     "background, stderr in the foreground)")
    mount.set_defaults(run=_cmd_mount)
    register_registry(commands)

    inspect = commands.add_parser(
        "inspect", help="list an image's layers without mounting it",
        description="Show the image's layers bottom to top: DiffID, chainID, blob digest, "
                    "compressed and uncompressed size, entries, and the history line that "
                    "created each. A registry image (docker://REGISTRY/REPO:TAG) is read "
                    "from its manifest and config alone: sizes and entries of layers not "
                    "in the layer cache are not known without pulling them.")
    inspect.add_argument("image", metavar="IMAGE")
    _add_image_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_remote_arguments(inspect)
    inspect.set_defaults(run=_cmd_inspect)

    cache = commands.add_parser("cache", help="the cache of unpacked tar layers",
                                description="List or prune the layer cache: unpacked "
                                            "layers, lazy skeletons of registry layers, "
                                            "partial downloads.")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    cache_ls = cache_commands.add_parser("ls", help="cached layers, sizes, images using them")
    cache_ls.add_argument("--cache-dir", metavar="DIR", help=_CACHE_HELP)
    cache_ls.set_defaults(run=_cmd_cache_ls)
    cache_prune = cache_commands.add_parser(
        "prune", help="remove layers and lazy skeletons no known image uses (with --all: "
                      "every one) and partial downloads, unless a mount or pull uses them")
    cache_prune.add_argument("--cache-dir", metavar="DIR", help=_CACHE_HELP)
    cache_prune.add_argument("--all", action="store_true", help="remove every unused layer")
    cache_prune.set_defaults(run=_cmd_cache_prune)

    umount = commands.add_parser("umount", help="unmount a layerfs mount",
                                 description="Unmount (fusermount3 -u as a user, umount as "
                                             "root); also clears a mount whose daemon died.")
    umount.add_argument("mountpoint")
    umount.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    umount.set_defaults(run=_cmd_umount)

    from .explore.cli import register as register_explore
    register_explore(commands)
    from .browse.cli import register as register_browse
    register_browse(commands)
    return parser


_CACHE_HELP = "the layer cache (default: $XDG_CACHE_HOME/layerfs, i.e. ~/.cache/layerfs)"


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=list(FORMS), help="the image's form, if not detected")
    parser.add_argument("--image", dest="image_ref", metavar="REF",
                        help="which image of a store or archive: NAME[:TAG], image ID "
                             "(full or short) or digest (same as IMAGE:REF)")
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                        help="which platform of a multi-arch image (default: this host's)")
    parser.add_argument("--cache-dir", metavar="DIR", help=_CACHE_HELP)
    parser.add_argument("--max-layer-size", metavar="SIZE",
                        help="refuse a tar layer bigger than SIZE uncompressed, e.g. 64G "
                             "(default 256G; env LAYERFS_MAX_LAYER_SIZE)")
    parser.add_argument("--max-entries", metavar="N",
                        help="refuse a tar layer with more than N entries (default 5000000; "
                             "env LAYERFS_MAX_ENTRIES)")


def _cache(args: argparse.Namespace) -> LayerCache:
    limits = UnpackLimits.from_env(max_layer_size=getattr(args, "max_layer_size", None),
                                   max_entries=getattr(args, "max_entries", None))
    return LayerCache(args.cache_dir, limits=limits)


def _image_for_mount(args: argparse.Namespace) -> tuple[Image, str]:
    options = parse_options(args.options)
    explicit = args.layer or options.lowerdirs
    if args.layer and options.lowerdirs:
        raise UsageError("give layers either with --layer or with -o lowerdir=, not both")
    if explicit:
        if args.image is not None:
            raise UsageError("with --layer or -o lowerdir= give only the MOUNTPOINT")
        return open_explicit_layers(list(explicit)), args.mountpoint
    if args.image is None:
        raise UsageError("mount needs IMAGE and MOUNTPOINT")
    image = open_image(args.image, args.format, image_ref=args.image_ref,
                       platform=args.platform, cache=_cache(args),
                       quiet=args.quiet, remote=remote_options(args))
    return image, args.mountpoint


def _cmd_mount(args: argparse.Namespace) -> int:
    image, mountpoint = _image_for_mount(args)
    options = parse_options(args.options)
    upperdir = args.upper or options.upperdir
    workdir = args.work or options.workdir
    if args.upper and options.upperdir or args.work and options.workdir:
        raise UsageError("give the upper dir either with --upper/--work or with -o "
                         "upperdir=/workdir=, not both")
    if workdir and not upperdir:
        raise UsageError("a work dir needs an upper dir (--upper or -o upperdir=)")
    upper = None
    index: PathIndex | DeferredIndex
    if upperdir:
        if options.upperdir and not options.workdir:
            raise UsageError("-o upperdir= needs -o workdir= (as the kernel overlay)")
        layers = image.layers if image.pending is None else image.pending.wait()
        index, upper = open_writable(layers, upperdir, workdir,
                                     userxattr=True if options.userxattr else None,
                                     redirect_dir=options.redirect_dir,
                                     volatile=options.volatile,
                                     read_only=options.read_only)
    elif image.pending is not None:  # live now, its files once the layers are there
        index = DeferredIndex(image.pending)
    else:
        index = PathIndex(image.layers)
    serve(index, mountpoint, extra_options=options.fuse, foreground=args.foreground,
          debug=args.debug, log_file=args.log, upper=upper)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    if is_remote(args.image):  # the manifest and config; no layer is pulled
        plan = read_remote(args.image, platform=args.platform, options=remote_options(args))
        rows = layer_rows(plan, _cache(args), survey=False)
    else:
        plan = read_image(args.image, args.format, image_ref=args.image_ref,
                          platform=args.platform)
        rows = layer_rows(plan, _cache(args))
    print(render_json(plan, rows) if args.json else render_table(plan, rows))
    return 0


def _cmd_cache_ls(args: argparse.Namespace) -> int:
    cache = LayerCache(args.cache_dir)
    print(render_layers(list_layers(cache)))
    registry = render_registry(list_skeletons(cache), list_partials(cache))
    if registry:
        print("\n" + registry)
    return 0


def _cmd_cache_prune(args: argparse.Namespace) -> int:
    cache = LayerCache(args.cache_dir)
    report = prune(cache, all_layers=args.all)
    registry = prune_registry(cache, all_layers=args.all).summary()
    print(f"removed {len(report.removed)} layers ({report.freed} bytes of files)"
          + (f", kept {len(report.kept_in_use)} in use by mounts" if report.kept_in_use else "")
          + (f", cleared {report.stale_unpacks} interrupted unpacks" if report.stale_unpacks
             else "")
          + (f"; {registry}" if registry else ""))
    return 0


def _cmd_umount(args: argparse.Namespace) -> int:
    unmount(args.mountpoint, lazy=args.lazy)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"layerfs {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LayerfsError as exc:
        print(f"layerfs: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`layerfs inspect IMAGE | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A file the user named (or the upper/work dir) cannot be used: one line.
        where = os.fsdecode(exc.filename) + ": " if exc.filename is not None else ""
        print(f"layerfs: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
