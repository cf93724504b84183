"""``layerfs mounts``: the live layerfs mounts, from ``/proc/self/mountinfo`` and the
records their daemons keep (:mod:`layerfs.mountrecord`).

JSON (``--json``): a list of ``{"mountpoint", "image", "type", "engine", "upper",
"pid", "read_only"}``; ``engine``, ``upper`` and ``pid`` are null for a mount
whose daemon keeps no record (an older layerfs, or another user's mount).
"""

from __future__ import annotations

import argparse
import os
import re

from ..mountrecord import prune, read_record
from .render import Painter, colour_enabled, dumps, table

MOUNTINFO = "/proc/self/mountinfo"
TYPES = ("fuse.layerfs", "fuse.layerfs-overlay")
_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def live_mounts(mountinfo: str = MOUNTINFO) -> list[dict]:
    prune()
    mounts = []
    with open(mountinfo, "rb") as lines:
        for line in lines:
            fields = line.split()
            separator = fields.index(b"-")
            fstype, source = os.fsdecode(fields[separator + 1]), fields[separator + 2]
            if fstype not in TYPES:
                continue
            mountpoint = _unescape(fields[4])
            record = read_record(mountpoint) or {}
            mounts.append({"mountpoint": mountpoint, "image": _unescape(source),
                           "type": fstype, "engine": record.get("engine"),
                           "upper": record.get("upper"), "pid": record.get("pid"),
                           "read_only": b"ro" in fields[5].split(b",")})
    return mounts


def to_text(mounts: list[dict], paint: Painter) -> str:
    if not mounts:
        return "no layerfs mounts"
    rows = [(m["mountpoint"], m["image"], m["engine"] or "-",
             m["upper"] or ("-" if m["read_only"] else "rw"),
             str(m["pid"]) if m["pid"] else "-") for m in mounts]
    return table(("MOUNTPOINT", "IMAGE", "ENGINE", "UPPER", "PID"), rows, paint)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "mounts", help="the live layerfs mounts: image, engine, upper dir, daemon pid",
        description="List the layerfs mounts of this mount namespace (from "
                    "/proc/self/mountinfo) with the image each serves, its FUSE engine, "
                    "its upper dir and its daemon's pid (from the record the daemon keeps "
                    "in the runtime dir; '-' where there is none).")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=_cmd_mounts)


def _cmd_mounts(args: argparse.Namespace) -> int:
    import sys

    mounts = live_mounts()
    print(dumps(mounts) if args.json else to_text(mounts, Painter(colour_enabled(sys.stdout))))
    return 0
