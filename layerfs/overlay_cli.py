"""``layerfs-overlay``: the mount(8) helper, driven exactly like fuse-overlayfs.

    layerfs-overlay [-f] [-d] -o lowerdir=L1[:L2...],upperdir=U,workdir=W[,OPTS] [SOURCE] MNT

Options may come before or after the positionals, in one or several ``-o``.
``mount -t fuse.layerfs-overlay SOURCE MNT -o ...`` reaches it through
mount.fuse3. Generic mount options (``rw``, ``dev``, ``nosuid``, ``noatime``,
...) are passed to FUSE where it knows them; overlay options layerfs does not
need (``xino=``, ``metacopy=``, ...) and unknown ones are accepted
with a note, as fuse-overlayfs does. Without ``redirect_dir=`` or ``index=`` it
takes the kernel overlay's default from its module parameters, as ``mount -t overlay``
does (:mod:`layerfs.overlay_defaults`); what the options make of the mount is
decided in :func:`layerfs.mountplan.plan_overlay_mount`. ``engine=native|pyfuse3`` picks the
FUSE engine. It returns 0 once the mount is live and
serves in the background; a plain ``umount MNT`` ends it. As root it mounts
with ``allow_other`` (and always ``default_permissions``), as a system-wide
overlay is used.
"""

from __future__ import annotations

import sys

from .errors import LayerfsError, UsageError
from .mount import serve
from .mountplan import plan_overlay_mount
from .options import parse_options, split_escaped

PROG = "layerfs-overlay"
USAGE = (f"usage: {PROG} [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR]"
         f"[,OPTIONS] [SOURCE] MOUNTPOINT")
# Mount flags FUSE applies itself (libfuse's mount options).
FUSE_MOUNT_FLAGS = frozenset({
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "noatime", "nodiratime",
    "sync", "async", "dirsync",
})


class Arguments:
    def __init__(self) -> None:
        self.options: list[str] = []
        self.positionals: list[str] = []
        self.foreground = False
        self.debug = False


def parse_arguments(argv: list[str]) -> Arguments:
    args = Arguments()
    items = iter(argv)
    for item in items:
        if item == "-o":
            value = next(items, None)
            if value is None:
                raise UsageError("-o needs a value")
            args.options.append(value)
        elif item.startswith("-o"):
            args.options.append(item[2:])
        elif item in ("-f", "--foreground"):
            args.foreground = True
        elif item in ("-d", "--debug", "-odebug"):
            args.debug = True
            args.foreground = True
        elif item in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        elif item in ("-V", "--version"):
            from . import __version__
            print(f"{PROG} (layerfs) {__version__}")
            sys.exit(0)
        elif item.startswith("-") and item != "-":
            raise UsageError(f"{item}: unknown flag")
        else:
            args.positionals.append(item)
    if not 1 <= len(args.positionals) <= 2:
        raise UsageError("expected [SOURCE] MOUNTPOINT")
    return args


def sort_options(strings: list[str]) -> tuple[list[str], set[str], list[str]]:
    """(options layerfs understands, FUSE mount flags, ignored ones)."""
    known: list[str] = []
    flags: set[str] = set()
    ignored: list[str] = []
    for string in strings:
        for item in split_escaped(string, ",", unescape=False):
            if not item:
                continue
            if item in FUSE_MOUNT_FLAGS:
                flags.add(item)
                continue
            if item == "debug":
                continue
            if item.startswith("engine="):
                known.append(item)  # layerfs's own: a bad value is an error, not a note
                continue
            try:
                parse_options([item])
            except UsageError:
                ignored.append(item)
                continue
            known.append(item)
    return known, flags, ignored


def run(argv: list[str]) -> int:
    args = parse_arguments(argv)
    known, flags, ignored = sort_options(args.options)
    for item in ignored:
        print(f"{PROG}: unknown argument ignored: {item}", file=sys.stderr)
    options = parse_options([",".join(known)] if known else [])
    source = args.positionals[0] if len(args.positionals) == 2 else PROG
    plan = plan_overlay_mount(options, flags=flags, source=source, subtype=PROG)
    index, upper = plan.open()
    serve(index, args.positionals[-1], foreground=args.foreground, debug=args.debug,
          upper=upper, **plan.serve_options())
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    except LayerfsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
