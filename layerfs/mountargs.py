"""mount(8) helper calls to ``layerfs mount`` arguments (for :mod:`layerfs.mount_helper`).

Pure translation: ``IMAGE MOUNTPOINT -o OPTIONS`` becomes ``mount [FLAGS] IMAGE
MOUNTPOINT [-o OPTIONS]`` (see :mod:`layerfs.mount_helper` for which options
become flags). ``layerfs`` itself uses :func:`is_helper_call` to recognise such a
call made through mount.fuse3; the program ``mount.fuse.layerfs`` runs ``layerfs``
with the result.
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
