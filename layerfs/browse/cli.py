"""``layerfs browse IMAGE [IMAGE_B]``: the subcommand (layerfs/cli.py registers it).

The images are opened as ``inspect`` and the explore commands open them (every form,
every transport, the same options); the UI starts once their layers are on disk.
"""

from __future__ import annotations

import argparse
import os

EXIT_NO_UI = 1


def register(commands: argparse._SubParsersAction) -> None:
    from ..cliopts import add_image_options

    browse = commands.add_parser(
        "browse", help="browse an image's layers and merged tree in the terminal (like dive)",
        description="A full-screen browser: the layers bottom to top (size, entries, DiffID, "
                    "command); the merged tree as of the selected layer, with what that layer "
                    "added, modified, removed (whiteouts) and made opaque marked A/M/D/O, or "
                    "every change up to it (Ctrl-A); the versions of the entry under the "
                    "cursor across layers and what hides them, and its first lines; the "
                    "image's efficiency and wasted bytes. With IMAGE_B: B's tree marked by "
                    "what differs from A (as 'layerfs diff A B'). Keys: Tab switches panes, "
                    "arrows or j/k move, Space collapses, Ctrl-F filters, Ctrl-L/Ctrl-A layer "
                    "or aggregated changes, Ctrl-U only changes, p jumps to the layer that "
                    "provides the entry, q quits.")
    browse.add_argument("image", metavar="IMAGE")
    browse.add_argument("image_b", nargs="?", metavar="IMAGE_B",
                        help="a second image to compare with (--image applies to IMAGE only)")
    group = add_image_options(browse)
    browse.add_argument("--quiet", "-q", action="store_true",
                        help="no progress display while unpacking layers")
    group.add_argument("--lazy", action="store_true",
                       help="fetch file data only when shown (zstd:chunked, eStargz and "
                            "uncompressed layers; other layers are pulled whole first)")
    browse.set_defaults(run=_cmd_browse)


def _cmd_browse(args: argparse.Namespace) -> int:
    import sys

    from ..errors import UsageError

    try:
        from .app import BrowseApp
    except ImportError as exc:  # textual is a dependency, but an install may lack it
        raise UsageError(f"needs the textual package ({exc}): pip install textual") from None
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UsageError("needs a terminal (for scripts: layerfs inspect, diff, which, usage)")
    images = [_open(args, args.image, first=True)]
    if args.image_b is not None:
        images.append(_open(args, args.image_b, first=False))
    result = BrowseApp(images).run()
    return 0 if result is None else result


def _open(args: argparse.Namespace, spec: str, *, first: bool):
    from ..cliopts import image_request
    from ..images import Image
    from ..mountplan import open_image

    image = open_image(image_request(args, None if first else spec))
    if image.pending is not None:  # a lazy image's whole-pulled layers: wait for them
        image = Image(layers=image.pending.wait(quiet=args.quiet), name=image.name, form=image.form,
                      config=image.config)
    return image, image.name or os.path.basename(spec.rstrip("/")) or spec
