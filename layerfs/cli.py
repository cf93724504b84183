"""The ``layerfs`` command line.

Each subcommand parses its arguments and calls into the library; a
:class:`~layerfs.errors.LayerfsError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, clidocs, mountargs
from .cliopts import CACHE_HELP, add_image_options, image_request
from .engines import DEFAULT_ENGINE, ENGINE_VARIABLE
from .errors import LayerfsError, UsageError
from .explore import export as export_command
from .explore import files as files_command
from .explore import images as images_command
from .explore import mountlist as mounts_command
from .images import transport
from .images.inspect import layer_rows, raw_manifest, render_config, render_json, render_table
from .mount import serve, unmount
from .mountplan import plan_mount, read_image
from .options import ENGINES, MountOptions, parse_options
from .registry.cli import register as register_registry
from .registry.inventory import list_partials, list_skeletons, prune_registry, render_registry
from .sizes import format_size, plural
from .unpack import LayerCache
from .unpack.inventory import cache_json, list_layers, prune, render_layers

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
                            "upperdir=DIR, workdir=DIR, redirect_dir=on|off, index=on|off, userxattr, "
                            "engine=NAME, "
                            "allow_other, xattrs=auto|on|off, squash_to_root, squash_to_uid=N, "
                            "squash_to_gid=N, uidmapping=CONTAINER:HOST:SIZE[:...], gidmapping=...; generic "
                            "mount options (ro, nodev, ...) are accepted")
    mount.add_argument("--as-me", action="store_true",
                       help="show every entry as owned by you (your uid and gid), so the "
                            "kernel's permission checks let you read every file whose owner "
                            "bits allow it; the real owners: getfattr -n user.layerfs.owner")
    registry = add_image_options(mount)
    registry.add_argument("--lazy", action="store_true",
                          help="mount once the tables of contents are fetched and fetch "
                               "file data on first open (zstd:chunked, eStargz and "
                               "uncompressed layers; other layers are pulled whole in the "
                               "background, and reads wait for them)")
    mount.add_argument("--quiet", "-q", action="store_true",
                       help="no progress display while unpacking layers")
    mount.add_argument("-f", "--foreground", action="store_true",
                       help="stay in the foreground (default: serve from the background)")
    mount.add_argument("--debug", action="store_true",
                       help="log every FUSE request (implies logging to stderr with -f)")
    mount.add_argument("--engine", choices=ENGINES, default=None,
                       help="the FUSE engine: native (layerfs's own) or pyfuse3 (libfuse) "
                            f"(default: ${ENGINE_VARIABLE}, else {DEFAULT_ENGINE}; also "
                            "-o engine=)")
    mount.add_argument("--log", metavar="FILE", help="log to FILE (default: syslog in the "
                                                     "background, stderr in the foreground)")
    mount.set_defaults(run=_cmd_mount)
    register_registry(commands)

    inspect = commands.add_parser(
        "inspect", help="what skopeo inspect shows of an image, and its layers",
        description="Show what skopeo inspect shows (image digest, created, platform, Env, "
                    "Entrypoint, Cmd, WorkingDir, User, Labels, ExposedPorts), then the "
                    "image's layers bottom to top: DiffID, chainID, blob digest, "
                    "compressed and uncompressed size, entries, and the history line that "
                    "created each. A registry image (docker://REGISTRY/REPO:TAG) is read "
                    "from its manifest and config alone: sizes and entries of layers not "
                    "in the layer cache are not known without pulling them.")
    inspect.add_argument("image", metavar="IMAGE")
    add_image_options(inspect)
    shown = inspect.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print JSON instead of a table")
    shown.add_argument("--config", action="store_true",
                       help="print the image config (JSON), as skopeo inspect --config")
    shown.add_argument("--raw", action="store_true",
                       help="print the manifest as stored, as skopeo inspect --raw")
    inspect.set_defaults(run=_cmd_inspect)

    cache = commands.add_parser("cache", help="the cache of unpacked tar layers",
                                description="List or prune the layer cache: unpacked "
                                            "layers, lazy skeletons of registry layers, "
                                            "partial downloads.")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    cache_ls = cache_commands.add_parser("ls", help="cached layers, sizes, images using them")
    cache_ls.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
    cache_ls.add_argument("--json", action="store_true",
                          help="print JSON (schema: layerfs/unpack/inventory.py cache_json)")
    cache_ls.set_defaults(run=_cmd_cache_ls)
    cache_prune = cache_commands.add_parser(
        "prune", help="remove layers and lazy skeletons no known image uses (with --all: "
                      "every one) and partial downloads, unless a mount or pull uses them")
    cache_prune.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
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
    from .rootless_cli import register as register_rootless
    register_rootless(commands)
    for module in (images_command, mounts_command, export_command, files_command):
        module.register(commands)
    clidocs.register(commands, parser)
    from .browse.cli import register as register_browse
    register_browse(commands)
    return parser


def _absolute_paths(args: argparse.Namespace, options: MountOptions) -> None:
    """Make every path the user gave absolute, against their working directory: the
    background daemon runs from / and reads some of them later (the log, the cache of
    a lazy pull, the upper dir)."""
    def absolute(path: str | None) -> str | None:
        return None if path is None else os.path.abspath(path)

    for name in ("log", "cache_dir", "upper", "work", "authfile", "mountpoint"):
        if getattr(args, name, None) is not None:
            setattr(args, name, absolute(getattr(args, name)))
    args.layer = [os.path.abspath(path) for path in args.layer]
    if args.image is not None:
        args.image = transport.absolute(args.image)
    options.lowerdirs = [os.path.abspath(path) for path in options.lowerdirs]
    options.upperdir = absolute(options.upperdir)
    options.workdir = absolute(options.workdir)


def _cmd_mount(args: argparse.Namespace) -> int:
    options = parse_options(args.options)
    _absolute_paths(args, options)
    plan = plan_mount(image_request(args) if args.image is not None else None, options,
                      layers=args.layer, upper=args.upper, work=args.work,
                      engine=args.engine, as_me=args.as_me)
    made = plan.dirs_made()
    launcher = os.getpid()
    try:
        index, upper = plan.open()
        serve(index, args.mountpoint, foreground=args.foreground, debug=args.debug,
              log_file=args.log, upper=upper, **plan.serve_options())
    except BaseException:
        if os.getpid() == launcher:  # not the daemon: the mount never went live
            _remove_made(made)
        raise
    return 0


def _remove_made(paths: list[str]) -> None:
    for path in reversed(paths):
        try:
            os.rmdir(path)  # empty when this mount made it; otherwise it stays
        except OSError:
            pass


def _cmd_inspect(args: argparse.Namespace) -> int:
    request = image_request(args)
    plan = read_image(request)  # a registry image: the manifest and config, no layer
    if args.config:
        print(render_config(plan))
        return 0
    if args.raw:
        sys.stdout.buffer.write(raw_manifest(plan))
        sys.stdout.flush()
        return 0
    rows = layer_rows(plan, request.cache(), survey=not request.is_remote)
    print(render_json(plan, rows) if args.json else render_table(plan, rows))
    return 0


def _cmd_cache_ls(args: argparse.Namespace) -> int:
    cache = LayerCache(args.cache_dir)
    if args.json:
        print(cache_json(list_layers(cache), list_skeletons(cache), list_partials(cache)))
        return 0
    print(render_layers(list_layers(cache)))
    registry = render_registry(list_skeletons(cache), list_partials(cache))
    if registry:
        print("\n" + registry)
    return 0


def _cmd_cache_prune(args: argparse.Namespace) -> int:
    cache = LayerCache(args.cache_dir)
    report = prune(cache, all_layers=args.all)
    registry = prune_registry(cache, all_layers=args.all).summary()
    print(f"removed {plural(len(report.removed), 'layer')} ({format_size(report.freed)} "
          "of files)"
          + (f", kept {len(report.kept_in_use)} in use by mounts" if report.kept_in_use else "")
          + (f", cleared {plural(report.stale_unpacks, 'interrupted unpack')}"
             if report.stale_unpacks else "")
          + (f"; {registry}" if registry else ""))
    return 0


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace
               ) -> argparse.ArgumentParser:
    """The (sub)parser of the command given, e.g. ``cache ls``'s."""
    while True:
        chosen = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(args, action.dest, None) or "")
        if chosen is None:
            return parser
        parser = chosen


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _cmd_umount(args: argparse.Namespace) -> int:
    unmount(args.mountpoint, lazy=args.lazy)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if mountargs.is_helper_call(argv, _command_names(parser)):  # mount -t fuse.layerfs
        argv = mountargs.mount_arguments(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would show the top-level usage: show the subcommand's
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
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
