"""The ``layerfs`` command line.

Each subcommand parses its arguments and calls into the library; a
:class:`~layerfs.errors.LayerfsError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import LayerfsError, UsageError
from .images import FORMS, Image, open_image
from .images.layerdirs import open_explicit_layers
from .index import PathIndex
from .mount import serve, unmount
from .upper import open_writable
from .options import parse_options

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
                    "writable with an upper dir in the kernel overlay's format. "
                    "IMAGE is a directory of extracted layers (ordered by its 'layers' "
                    "file, else by name); or give the layers with --layer (bottom first) "
                    "or -o lowerdir=TOP:...:BOTTOM (the kernel overlay's order).")
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
    mount.add_argument("--format", choices=sorted(FORMS), help="the image's form, if not detected")
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="stay in the foreground (default: serve from the background)")
    mount.add_argument("--debug", action="store_true",
                       help="log every FUSE request (implies logging to stderr with -f)")
    mount.add_argument("--log", metavar="FILE", help="log to FILE (default: syslog in the "
                                                     "background, stderr in the foreground)")
    mount.set_defaults(run=_cmd_mount)

    umount = commands.add_parser("umount", help="unmount a layerfs mount",
                                 description="Unmount (fusermount3 -u as a user, umount as "
                                             "root); also clears a mount whose daemon died.")
    umount.add_argument("mountpoint")
    umount.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    umount.set_defaults(run=_cmd_umount)
    return parser


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
    return open_image(args.image, args.format), args.mountpoint


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
    if upperdir:
        if options.upperdir and not options.workdir:
            raise UsageError("-o upperdir= needs -o workdir= (as the kernel overlay)")
        index, upper = open_writable(image.layers, upperdir, workdir,
                                     userxattr=True if options.userxattr else None,
                                     redirect_dir=options.redirect_dir,
                                     volatile=options.volatile,
                                     read_only=options.read_only)
    else:
        index = PathIndex(image.layers)
    serve(index, mountpoint, extra_options=options.fuse, foreground=args.foreground,
          debug=args.debug, log_file=args.log, upper=upper)
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


if __name__ == "__main__":
    sys.exit(main())
