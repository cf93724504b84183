"""``layerfs cat IMAGE PATH`` and ``layerfs ls [-l] IMAGE [PATH]``: the merged tree read
without mounting, from the index the mount uses (each directory read when first needed).

Paths resolve as in the mount: symlinks in the path are followed inside the image
(an absolute target starts at the image's root, ``..`` stops at the root), so
``cat IMAGE /bin/sh`` on a usr-merged image reads ``/usr/bin/sh``. ``ls -l``
prints what ``ls -l`` prints, plus the layer each entry comes from.

JSON (``ls --json``): a list of ``{"path", "type", "mode", "nlink", "uid",
"gid", "size", "rdev", "mtime_ns", "target", "layer": {"index", "label",
"diff_id", "chain_id", "created_by"}}``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import BinaryIO

from ..backing import open_for_reading
from ..errors import LayerfsError
from ..index import Node, PathIndex
from .layers import layer_name, layer_ref
from .render import dumps, json_path, parse_path, shown_path

MAX_SYMLINKS = 40  # the kernel's limit on symlinks followed in one lookup


class PathError(LayerfsError):
    pass


def resolve(index: PathIndex, path: bytes, *, follow_last: bool = True) -> tuple[bytes, Node]:
    """(merged path, node) of ``path``, symlinks followed inside the image; PathError
    naming the path when it does not exist."""
    pending = [p for p in path.split(b"/") if p]
    parts: list[bytes] = []
    nodes: list[Node] = [index.root]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == b".":
            continue
        if part == b"..":
            if parts:
                parts.pop()
                nodes.pop()
            continue
        child = index.lookup(nodes[-1], part)
        if child is None:
            where = "/" + b"/".join(parts + [part]).decode("utf-8", "backslashreplace")
            reason = "not a directory" if nodes[-1].children is None else "no such file or directory"
            raise PathError(f"{shown_path(path)}: {reason}" + (f" ({where})" if where !=
                                                               shown_path(path) else ""))
        if stat.S_ISLNK(child.mode) and (pending or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise PathError(f"{shown_path(path)}: too many levels of symbolic links")
            target = index.read_link(child)
            if target.startswith(b"/"):
                parts, nodes = [], [index.root]
            pending = [p for p in target.split(b"/") if p] + pending
            continue
        parts.append(part)
        nodes.append(child)
    return b"/".join(parts), nodes[-1]


def open_data(index: PathIndex, node: Node) -> BinaryIO:
    """A regular file's data as the mount serves it (a lazy layer fetches it first)."""
    position, relpath = index.data_backing(node)
    layer = index.layers[position]
    layer.ensure_content(relpath)
    root = os.open(layer.root_bytes, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.fdopen(open_for_reading(root, relpath), "rb")
    finally:
        os.close(root)


def cat(index: PathIndex, path: bytes, out: BinaryIO) -> None:
    _, node = resolve(index, path)
    if node.is_dir:
        raise PathError(f"{shown_path(path)}: is a directory")
    if not stat.S_ISREG(node.mode):
        raise PathError(f"{shown_path(path)}: not a regular file")
    with open_data(index, node) as data:
        while chunk := data.read(1 << 20):
            out.write(chunk)


def entries(index: PathIndex, path: bytes, *, directory: bool = False
            ) -> list[tuple[bytes, bytes, Node]]:
    """What ``ls`` lists, as (merged path, name shown, node): a directory's children in
    name order, or the entry itself (a symlink not followed, shown as given)."""
    where, node = resolve(index, path, follow_last=True)
    if node.children is None or directory:
        own_path, own = resolve(index, path, follow_last=False) if not directory \
            else (where, node)
        return [(own_path, path or b"/", own)]
    return [(where + b"/" + name if where else name, name, node.children[name])
            for name in node.listing()]


def _type_char(mode: int) -> str:
    return {stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
            stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}.get(stat.S_IFMT(mode), "-")


def long_line(index: PathIndex, shown: bytes, node: Node) -> list[str]:
    """``ls -l``'s columns, the layer before the name."""
    if stat.S_ISCHR(node.mode) or stat.S_ISBLK(node.mode):
        size = f"{os.major(node.rdev)}, {os.minor(node.rdev)}"
    else:
        size = str(node.size)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(node.mtime_ns // 1_000_000_000))
    name = _text(shown)
    if stat.S_ISLNK(node.mode):
        name += " -> " + index.read_link(node).decode("utf-8", "backslashreplace")
    return [stat.filemode(node.mode), str(node.shown_nlink), str(node.uid), str(node.gid),
            size, when, layer_name(index.layers[node.layer], node.layer), name]


def _text(name: bytes) -> str:
    return shown_path(name)[1:] or "/"


def to_json(index: PathIndex, listed: list[tuple[bytes, bytes, Node]]) -> str:
    return dumps([{
        "path": json_path(path), "type": _type_char(node.mode),
        "mode": stat.S_IMODE(node.mode), "nlink": node.shown_nlink, "uid": node.uid,
        "gid": node.gid, "size": node.size, "rdev": node.rdev, "mtime_ns": node.mtime_ns,
        "target": os.fsdecode(index.read_link(node)) if stat.S_ISLNK(node.mode) else None,
        "layer": layer_ref(index, node.layer)} for path, _shown, node in listed])


def register(commands: argparse._SubParsersAction) -> None:
    from ..cliopts import add_image_arguments

    cat_parser = commands.add_parser(
        "cat", help="print a file of the image, without mounting it",
        description="Print the file PATH of the image's merged tree (symlinks followed "
                    "inside the image), read from the layer that provides it.")
    cat_parser.add_argument("image", metavar="IMAGE")
    cat_parser.add_argument("path", metavar="PATH")
    add_image_arguments(cat_parser)
    cat_parser.set_defaults(run=_cmd_cat)

    ls_parser = commands.add_parser(
        "ls", help="list a directory of the image, without mounting it",
        description="List PATH (default /) of the image's merged tree as ls does; -l adds "
                    "mode, links, owner, size, mtime (UTC) and the layer each entry comes "
                    "from (1-based index and DiffID), before its name.")
    ls_parser.add_argument("image", metavar="IMAGE")
    ls_parser.add_argument("path", nargs="?", default="/", metavar="PATH")
    ls_parser.add_argument("-l", dest="long", action="store_true",
                           help="long listing, with the layer of each entry")
    ls_parser.add_argument("-d", "--directory", action="store_true",
                           help="list a directory itself, not its entries")
    add_image_arguments(ls_parser)
    ls_parser.add_argument("--json", action="store_true", help="print JSON")
    ls_parser.set_defaults(run=_cmd_ls)


def _cmd_cat(args: argparse.Namespace) -> int:
    from .layers import open_for

    index = PathIndex(open_for(args).layers)
    cat(index, parse_path(args.path), sys.stdout.buffer)
    sys.stdout.flush()
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from .layers import open_for
    from .render import Painter, colour_enabled, table

    index = PathIndex(open_for(args).layers)
    listed = entries(index, parse_path(args.path), directory=args.directory)
    if args.json:
        print(to_json(index, listed))
    elif args.long:
        rows = [long_line(index, shown, node) for _path, shown, node in listed]
        text = table(["MODE", "LINKS", "UID", "GID", "SIZE", "MODIFIED", "LAYER", "NAME"],
                     rows, Painter(colour_enabled(sys.stdout)))
        print(text)
    else:
        for _path, shown, _node in listed:
            print(_text(shown))
    return 0
