"""``mount.fuse.layerfs``: images in mount(8) and fstab.

    mount -t fuse.layerfs IMAGE MOUNTPOINT -o ro[,upperdir=U,workdir=W,cache-dir=D,...]
    IMAGE  MOUNTPOINT  fuse.layerfs  ro,cache-dir=/var/cache/layerfs,nofail  0 0

mount(8) runs ``/sbin/mount.fuse.layerfs IMAGE MOUNTPOINT -o OPTIONS`` when it
exists, else mount.fuse3, which runs the program named by the type's subtype,
``layerfs IMAGE MOUNTPOINT -o OPTIONS`` (``layerfs`` hands such a call here).
The options become ``layerfs mount`` arguments: ``format=``, ``image=``,
``platform=``, ``cache-dir=``, ``log=``, ``max-layer-size=``, ``max-entries=``,
``authfile=``, ``lazy`` and ``insecure`` are its flags; ``upperdir=``,
``workdir=``, ``lowerdir=``... stay ``-o`` options; generic ones (``ro``, ``nodev``,
``noauto``, ``x-*``...) are accepted. It returns once the mount is live (the
daemon serves in the background; ``umount MOUNTPOINT`` ends it). As root the
mount is made with ``allow_other``, as a system-wide mount is used.
"""

from __future__ import annotations

import os
import sys

from .options import split_escaped

PROG = "mount.fuse.layerfs"
USAGE = f"usage: {PROG} IMAGE MOUNTPOINT [-o OPTIONS]"
# option=VALUE -> layerfs mount's --flag VALUE; bare options -> --flag
VALUE_FLAGS = {"format": "--format", "image": "--image", "platform": "--platform",
               "cache-dir": "--cache-dir", "log": "--log", "max-layer-size": "--max-layer-size",
               "max-entries": "--max-entries", "authfile": "--authfile"}
BARE_FLAGS = {"lazy": "--lazy", "insecure": "--insecure", "debug": "--debug"}
# mount(8)'s own: meaningless to the daemon
DROPPED = frozenset({"defaults", "auto", "noauto", "user", "users", "nouser", "owner",
                     "group", "nofail", "_netdev", "suid", "dev", "exec", "rw"})


def mount_arguments(argv: list[str]) -> list[str]:
    """``layerfs`` arguments (``mount ...``) for a mount(8) helper call; SystemExit(2)
    with the usage on a malformed one."""
    positionals: list[str] = []
    options: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "-o":
            options += split_escaped(next(items, ""), ",", unescape=False)
        elif item.startswith("-o"):
            options += split_escaped(item[2:], ",", unescape=False)
        elif item in ("-n", "-s", "-f", "-v", "-r", "-w"):
            continue  # mount(8)'s flags to helpers: no mtab, sloppy, fake, verbose, ro/rw
        elif item == "-t":
            next(items, None)
        elif item.startswith("-") and item != "-":
            _usage(f"{item}: unknown flag")
        else:
            positionals.append(item)
    if len(positionals) != 2:
        _usage("expected IMAGE MOUNTPOINT")
    flags: list[str] = []
    passed: list[str] = []
    for option in options:
        key, has_value, value = option.partition("=")
        if not option or key in DROPPED and not has_value or key.startswith("x-"):
            continue
        if key in VALUE_FLAGS and has_value:
            flags += [VALUE_FLAGS[key], value.replace("\\,", ",")]
        elif key in BARE_FLAGS and not has_value:
            flags.append(BARE_FLAGS[key])
        else:
            passed.append(option)
    if os.geteuid() == 0 and "allow_other" not in passed:
        passed.append("allow_other")
    if passed:
        flags += ["-o", ",".join(passed)]
    return ["mount", "--quiet", *flags, positionals[0], positionals[1]]


def _usage(message: str) -> None:
    print(f"{PROG}: {message}\n{USAGE}", file=sys.stderr)
    raise SystemExit(2)


def is_helper_call(argv: list[str], commands: set[str]) -> bool:
    """Whether ``layerfs ARGV`` is mount.fuse3 running the type's program: IMAGE
    MOUNTPOINT -o OPTIONS, the first not a subcommand, the second a directory."""
    positionals = [a for a in argv if not a.startswith("-")]
    return (bool(argv) and argv[0] not in commands and not argv[0].startswith("-")
            and "-o" in argv and len(positionals) == 3 and os.path.isdir(positionals[1]))


def main(argv: list[str] | None = None) -> int:
    from .cli import main as layerfs_main

    return layerfs_main(mount_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
