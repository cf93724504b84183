"""The registry's part of the command line: ``layerfs pull``.

``register(commands)`` is called once by :mod:`layerfs.cli` with its subcommand
table; the registry options every image command shares are in :mod:`layerfs.cliopts`.
"""

from __future__ import annotations

import argparse

from ..cliopts import add_image_options, remote_options
from ..unpack import LayerCache
from .pull import pull
from .reference import parse_reference


def register(commands: "argparse._SubParsersAction") -> None:
    parser = commands.add_parser(
        "pull", help="fetch an image from a registry into the layer cache",
        description="Fetch REFERENCE ([docker://]REGISTRY/REPO[:TAG|@DIGEST]) over the OCI "
                    "distribution API: the platform's manifest, the config and the layers, "
                    "every digest verified, layers unpacked into the layer cache (reused when "
                    "already there). Interrupted pulls resume where they stopped.")
    parser.add_argument("reference", metavar="REFERENCE")
    parser.add_argument("-o", "--output", metavar="OCI_LAYOUT",
                        help="also write the image to this OCI layout directory")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    add_image_options(parser, pull_command=True)
    parser.set_defaults(run=_cmd_pull)


def _cmd_pull(args: argparse.Namespace) -> int:
    result = pull(parse_reference(args.reference), remote_options(args),
                  LayerCache(args.cache_dir), platform=args.platform, layout=args.output,
                  quiet=args.quiet)
    print(result.summary())
    return 0
