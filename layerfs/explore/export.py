"""``layerfs export IMAGE -o rootfs.tar``: the merged tree flattened to one tar, as
``docker export`` and ``crane export`` give it.

Whiteouts and opaque dirs are applied (what the mount shows is what is written,
read from the same index); each entry keeps its owner (numeric, no names),
mode, mtime (to the nanosecond, in PAX), symlink target, device numbers and
xattrs (PAX ``SCHILY.xattr.*``; overlay-private ones never show); files
hard-linked in a layer stay hard links. Entries are sorted by path, parents
first, so the same image always gives the same bytes. Sockets cannot be stored
in tar and are skipped with a note on stderr. ``-o -`` writes to stdout. On a
terminal, stderr shows the entries and bytes written so far (not ``--quiet``).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from typing import BinaryIO, Iterator

from ..errors import UsageError
from ..index import Node, PathIndex
from ..progress import Board, Row
from .commit import Member, _kind_of, write_layer
from .files import open_data


def members(index: PathIndex, skipped: list[str]) -> Iterator[Member]:
    """The merged tree as tar members, sorted, parents first (not the root itself)."""
    links: dict[int, bytes] = {}
    for path, node in index.walk():
        if not path:
            continue
        kind = _kind_of(node.mode)
        if kind is None:
            skipped.append("/" + os.fsdecode(path))
            continue
        member = Member(path, kind, stat.S_IMODE(node.mode), node.uid, node.gid,
                        mtime_ns=node.mtime_ns, rdev=node.rdev,
                        xattrs={name: index.get_xattr(node, name)
                                for name in index.list_xattrs(node)})
        if kind == "f":
            if node.nlink > 1 and node.ino in links:
                member.kind, member.target = "h", links[node.ino]
            else:
                links[node.ino] = path
                member.size = node.size
                member.open = _opener(index, node)
        elif kind == "l":
            member.target = index.read_link(node)
        yield member


def _opener(index: PathIndex, node: Node):  # type: ignore[no-untyped-def]
    return lambda: open_data(index, node)


def export(index: PathIndex, out: BinaryIO, progress: Row | None = None
           ) -> tuple[int, list[str]]:
    """Write the tar to ``out``; (entries written, paths skipped). ``progress``: a
    row of the progress display, told the entries and bytes written."""
    skipped: list[str] = []
    _diff_id, _size, count = write_layer(members(index, skipped), out, "none",
                                         exact_mtime=True, progress=progress)
    return count, skipped


def register(commands: argparse._SubParsersAction) -> None:
    from ..cliopts import add_image_arguments

    parser = commands.add_parser(
        "export", help="flatten the merged tree to one tar (like docker export)",
        description="Write the image's merged tree as one tar, as docker export and crane "
                    "export do: whiteouts applied; owners, modes, mtimes, hard links, devices "
                    "and xattrs (PAX) kept; entries sorted, so the bytes are reproducible.")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("-o", "--output", required=True, metavar="FILE|-",
                        help="the tar to write ('-' for stdout)")
    add_image_arguments(parser)
    parser.set_defaults(run=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .layers import open_for

    if args.output == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a tar to a terminal; redirect stdout or give -o FILE")
    index = PathIndex(open_for(args).layers)
    board = Board(quiet=args.quiet)
    try:
        row = board.row(f"exporting {args.image}")
        count, skipped = _write(index, args.output, row)
    finally:
        board.close()
    for path in skipped:
        print(f"layerfs export: {path}: a socket cannot be stored in a tar, skipped",
              file=sys.stderr)
    return 0


def _write(index: PathIndex, output: str, row: Row) -> tuple[int, list[str]]:
    if output == "-":
        return export(index, sys.stdout.buffer, row)
    if _is_stream(output):
        # A device, a fifo (/dev/null, a pipe): written to, never renamed over.
        with open(output, "wb") as out:
            return export(index, out, row)
    temporary = output + ".partial"
    try:
        with open(temporary, "wb") as out:
            result = export(index, out, row)
        os.replace(temporary, output)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return result


def _is_stream(path: str) -> bool:
    """Whether ``path`` exists and is not a regular file (a tar goes there as is)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
