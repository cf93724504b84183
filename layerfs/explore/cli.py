"""The explore subcommands: ``which``, ``diff``, ``usage``, ``compare``, ``commit``.

:func:`register` adds them to the main parser (layerfs/cli.py calls it); each
``_cmd_*`` returns the exit status. Errors are :class:`~layerfs.errors.LayerfsError`,
printed by the main CLI.
"""

from __future__ import annotations

import argparse
import sys

from ..index import PathIndex
from .render import Painter, colour_enabled, parse_path


def _image_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import _add_image_arguments

    _add_image_arguments(parser)
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress display while unpacking layers")


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (schema: see --help "
                                                            "of the module docs)")


def register(commands: argparse._SubParsersAction) -> None:
    which = commands.add_parser(
        "which", help="which layer provides a path, what it shadows, what hides it",
        description="For each PATH of the image's merged tree: the layer that provides it "
                    "(index, DiffID, chainID, created_by), the versions it shadows in lower "
                    "layers, and the whiteout or opaque dir that hides it if it is hidden. "
                    "Works without mounting.")
    which.add_argument("image", metavar="IMAGE")
    which.add_argument("paths", nargs="+", metavar="PATH")
    _image_arguments(which)
    _output_arguments(which)
    which.set_defaults(run=_cmd_which)


def _paint() -> Painter:
    return Painter(colour_enabled(sys.stdout))


def _cmd_which(args: argparse.Namespace) -> int:
    from . import which
    from .layers import open_for

    image = open_for(args)
    index = PathIndex(image.layers)
    results = which.explain_paths(index, [parse_path(p) for p in args.paths])
    print(which.to_json(image, results) if args.json else which.to_text(image, results, _paint()))
    return 0 if all(r.node is not None for r in results) else 1
