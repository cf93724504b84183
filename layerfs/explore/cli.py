"""The explore subcommands: ``which``, ``diff``, ``usage``, ``compare``, ``commit``.

:func:`register` adds them to the main parser (layerfs/cli.py calls it); each
``_cmd_*`` returns the exit status. Errors are :class:`~layerfs.errors.LayerfsError`,
printed by the main CLI.
"""

from __future__ import annotations

import argparse
import sys

from ..cliopts import add_image_arguments, image_option_argv
from ..index import PathIndex
from ..treediff import DEFAULT_PROPERTIES as _TREEDIFF_PROPERTIES
from .render import Painter, colour_enabled, parse_path


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON (schema: the docstring of layerfs/explore/<command>.py)")


def register(commands: argparse._SubParsersAction) -> None:
    which = commands.add_parser(
        "which", help="which layer provides a path, what it shadows, what hides it",
        description="For each PATH of the image's merged tree: the layer that provides it "
                    "(index, DiffID, chainID, created_by), the versions it shadows in lower "
                    "layers, and the whiteout or opaque dir that hides it if it is hidden. "
                    "Works without mounting. Exit 1 when a path is hidden or in no layer.")
    which.add_argument("image", metavar="IMAGE")
    which.add_argument("paths", nargs="+", metavar="PATH")
    add_image_arguments(which)
    _output_arguments(which)
    which.set_defaults(run=_cmd_which)

    diff = commands.add_parser(
        "diff", help="what a layer changed, or what differs between two layers or images",
        description="Without LAYER: every layer's changes relative to the layers below it. "
                    "With LAYER: that layer's changes. With LAYER_A LAYER_B: the image as of "
                    "layer A against the image as of layer B. With a second image: image A "
                    "against image B. Changes: added, modified (type, content by xxhash, "
                    "size, mode, uid, gid, rdev, symlink target, xattrs), removed (with the "
                    "subtree's entries and bytes), made opaque. A layer is a 1-based index "
                    "(negative from the top), a DiffID/chainID prefix or a label.")
    diff.add_argument("image", metavar="IMAGE")
    diff.add_argument("targets", nargs="*", metavar="LAYER|IMAGE_B",
                      help="LAYER, LAYER_A LAYER_B, or IMAGE_B")
    add_image_arguments(diff)
    diff.add_argument("--mtime", action="store_true", help="also report changed mtimes")
    diff.add_argument("--exit-code", action="store_true",
                      help="exit 1 when there are differences, 0 when there are none (as git)")
    _output_arguments(diff)
    diff.set_defaults(run=_cmd_diff)

    usage = commands.add_parser(
        "usage", help="where the image's bytes go: wasted, duplicated, efficiency",
        description="Bytes per layer, bytes shadowed or deleted by later layers (wasted), "
                    "files duplicated across layers, the top offenders and an efficiency "
                    "score. With --ci, exit 3 when a threshold is crossed (defaults with "
                    "--ci: --lowest-efficiency 0.9, --highest-wasted-percent 10).")
    usage.add_argument("image", metavar="IMAGE")
    add_image_arguments(usage)
    usage.add_argument("--top", type=int, default=10, metavar="N",
                       help="how many offenders and duplicates to show (default 10)")
    usage.add_argument("--min-duplicate-size", default="1", metavar="SIZE",
                       help="smallest file checked for duplicates (default 1 byte)")
    usage.add_argument("--ci", action="store_true",
                       help="check the thresholds; exit 3 when one is crossed")
    usage.add_argument("--lowest-efficiency", type=_ratio, metavar="RATIO",
                       help="fail below this efficiency (0..1, or a percentage like 90%%)")
    usage.add_argument("--highest-wasted-bytes", type=_size, metavar="SIZE",
                       help="fail above this many wasted bytes (e.g. 20M)")
    usage.add_argument("--highest-wasted-percent", type=_percent, metavar="PERCENT",
                       help="fail above this share of wasted bytes (0..100)")
    _output_arguments(usage)
    usage.set_defaults(run=_cmd_usage)

    compare = commands.add_parser(
        "compare", help="the layerfs mount against the kernel overlay or a directory",
        description="Mount IMAGE with layerfs and with the kernel overlay (root; layers in "
                    "tar form are converted to overlay-native copies first), or compare with "
                    "a directory (--against DIR), walk both and report every difference: "
                    "type, mode, owner, size, mtime, rdev, link target, xattrs, content "
                    "(xxhash), nlink, hard-link groups, names. Exit 0 only when identical, "
                    "3 when they differ.")
    compare.add_argument("image", metavar="IMAGE")
    compare.add_argument("--against", default="kernel", metavar="kernel|DIR",
                         help="the reference: the kernel overlay (default) or a directory")
    compare.add_argument("--ignore", action="append", default=[], metavar="PROPERTY",
                         choices=[p for p in _TREEDIFF_PROPERTIES],
                         help="a property not to compare (repeat): "
                              + ", ".join(_TREEDIFF_PROPERTIES))
    compare.add_argument("--tmp-dir", metavar="DIR",
                         help="where mountpoints and converted layer copies go")
    add_image_arguments(compare)
    _output_arguments(compare)
    compare.set_defaults(run=_cmd_compare)

    commit = commands.add_parser(
        "commit", help="turn an overlay upper dir into an OCI layer (and a new image)",
        description="Write UPPER (a layerfs or kernel overlay upper dir) as an OCI layer tar: "
                    "0/0 char devices become .wh.NAME, opaque dirs get .wh..wh..opq, renamed "
                    "dirs (redirects) are written whole from the merged view (needs the lower "
                    "layers: --lower, or the base image of --into), xattrs go into PAX "
                    "records, entries sorted. Compression from -o's suffix (.gz, .zst) or "
                    "--compression. --into LAYOUT --tag NEW adds an image: the base image "
                    "(--base, or the layout's only image) plus this layer.")
    commit.add_argument("upper", metavar="UPPER")
    commit.add_argument("-o", "--output", metavar="FILE", help="the layer tar to write")
    commit.add_argument("--compression", choices=("gzip", "zstd", "none"),
                        help="default: from the -o suffix; gzip with only --into")
    commit.add_argument("--mtime", type=int, metavar="EPOCH",
                        help="give every entry this mtime (reproducible layers)")
    commit.add_argument("--lower", metavar="IMAGE",
                        help="the image the upper dir was written over (for redirects)")
    commit.add_argument("--into", metavar="OCI_LAYOUT", help="append a new image to this layout")
    commit.add_argument("--tag", metavar="NEW", help="the new image's tag (with --into)")
    commit.add_argument("--base", metavar="REF",
                        help="the base image in the layout (default: its only image)")
    commit.add_argument("--created-by", default="layerfs commit", metavar="TEXT",
                        help="the history line of the new layer")
    commit.add_argument("--created", metavar="RFC3339",
                        help="the new image's creation time (default: now, or --mtime)")
    add_image_arguments(commit)
    _output_arguments(commit)
    commit.set_defaults(run=_cmd_commit)


def _paint() -> Painter:
    return Painter(colour_enabled(sys.stdout))


def _cmd_diff(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from .diff import DiffPrinter, TreeDiff
    from .layers import find_layer, layer_name, layer_ref, open_for, select_layer

    if len(args.targets) > 2:
        raise UsageError("give at most LAYER_A LAYER_B")
    image = open_for(args)
    printer = DiffPrinter(sys.stdout, image.name, as_json=args.json, paint=_paint())

    def side(position: int, of=image) -> dict:
        return {"image": of.name, "layer": layer_ref(of, position)}

    def title(position: int) -> str:
        layer = image.layers[position]
        text = f"layer {layer_name(layer, position)}"
        return text + (f": {' '.join(layer.created_by.split())}" if layer.created_by else "")

    def stack(count: int) -> PathIndex:
        return PathIndex(image.layers[:count])

    try:
        if not args.targets:
            below = None
            for position in range(len(image.layers)):
                above = stack(position + 1)
                printer.diff(title(position), side(position - 1) if position else None,
                             side(position), TreeDiff(below, above, mtime=args.mtime).changes())
                below = above
        elif len(args.targets) == 2:
            first, second = (select_layer(image, t) for t in args.targets)
            printer.diff(f"as of layer {first + 1} -> as of layer {second + 1}", side(first),
                         side(second), TreeDiff(stack(first + 1), stack(second + 1),
                                                mtime=args.mtime).changes())
        else:
            position = find_layer(image, args.targets[0])
            if position is not None:
                below = stack(position) if position else None
                printer.diff(title(position), side(position - 1) if position else None,
                             side(position), TreeDiff(below, stack(position + 1),
                                                      mtime=args.mtime).changes())
            else:
                other = open_for(args, args.targets[0])
                top_a, top_b = len(image.layers) - 1, len(other.layers) - 1
                printer.diff(f"{image.name or args.image} -> {other.name or args.targets[0]}",
                             side(top_a), side(top_b, other),
                             TreeDiff(PathIndex(image.layers), PathIndex(other.layers),
                                      mtime=args.mtime).changes())
    finally:
        printer.close()
    return 1 if args.exit_code and printer.changes else 0


def _cmd_commit(args: argparse.Namespace) -> int:
    import json
    import os

    from ..errors import UsageError
    from ..layer import Layer
    from ..sizes import format_size, plural
    from . import commit
    from .layers import open_for
    from .ocilayout import Layout, rfc3339

    if not args.output and not args.into:
        raise UsageError("give -o FILE, --into OCI_LAYOUT --tag NEW, or both")
    if args.into and not args.tag:
        raise UsageError("--into needs --tag NEW")
    if args.tag and not args.into:
        raise UsageError("--tag needs --into OCI_LAYOUT")
    layout = Layout(args.into) if args.into else None
    lower_spec = args.lower or (f"{args.into}:{args.base}" if args.into and args.base
                                else args.into)
    upper = os.path.abspath(args.upper)

    def lower() -> PathIndex:
        assert lower_spec is not None
        args.image = lower_spec
        image = open_for(args)
        return PathIndex(image.layers + [Layer(root=upper, label="upper")])

    compression = args.compression or (None if args.output else "gzip")
    target = args.output or (layout.new_blob_file() if layout else None)
    assert target is not None
    blob = commit.commit(upper, target, compression=compression, mtime=args.mtime,
                         lower=lower if lower_spec else None, quiet=args.quiet or args.json)
    image = None
    if layout is not None:
        layout.put_file(target, blob.digest, move=not args.output)
        created = args.created or rfc3339(args.mtime)
        image = layout.append(args.base, args.tag, blob, created_by=args.created_by,
                              created=created)
        image["layout"] = str(layout.path)
    layer = {"path": args.output, "media_type": blob.media_type,
             "compression": blob.compression, "digest": blob.digest, "diff_id": blob.diff_id,
             "size": blob.size, "uncompressed_size": blob.uncompressed_size,
             "entries": blob.entries, "whiteouts": blob.whiteouts,
             "opaque_dirs": blob.opaque_dirs, "skipped": blob.skipped}
    if args.json:
        print(json.dumps({"layer": layer, "image": image}, indent=2))
        return 0
    where = args.output or f"{args.into} (blob)"
    print(f"{where}: {plural(blob.entries, 'entry')} ({plural(blob.whiteouts, 'whiteout')}, "
          f"{plural(blob.opaque_dirs, 'opaque dir')}), {format_size(blob.size)} "
          f"{blob.compression}")
    print(f"  DiffID {blob.diff_id}\n  digest {blob.digest}")
    if image is not None:
        print(f"image {args.into}:{args.tag}: manifest {image['manifest']}, "
              f"{plural(image['layers'], 'layer')}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import compare
    from .layers import open_for

    image = open_for(args)
    index = PathIndex(image.layers)
    mount_args = [*image_option_argv(args), args.image]
    properties = [p for p in _TREEDIFF_PROPERTIES if p not in args.ignore]
    result = compare.run(index, mount_args, args.against, properties=properties,
                         tmp_dir=args.tmp_dir)
    if args.json:
        print(compare.to_json(image.name, args.against, result))
    else:
        print(compare.to_text(args.against, result, _paint()))
    return 0 if result.identical else compare.EXIT_DIFFERENT


def _ratio(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: give a ratio 0..1 or a percentage")
    return value


def _percent(text: str) -> float:
    value = float(text.rstrip("%"))
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text}: give a percentage 0..100")
    return value


def _size(text: str) -> int:
    from ..sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_usage(args: argparse.Namespace) -> int:
    from . import usage
    from .layers import open_for

    image = open_for(args)
    index = PathIndex(image.layers)
    report = usage.measure(index, top=args.top, min_duplicate_size=_size(args.min_duplicate_size))
    rules = None
    if args.ci:
        given = (args.lowest_efficiency, args.highest_wasted_bytes, args.highest_wasted_percent)
        defaults = all(value is None for value in given)
        rules = usage.check(report,
                            lowest_efficiency=0.9 if defaults else args.lowest_efficiency,
                            highest_wasted_bytes=args.highest_wasted_bytes,
                            highest_wasted_percent=10.0 if defaults
                            else args.highest_wasted_percent)
    if args.json:
        print(usage.to_json(image, index, report, rules))
    else:
        print(usage.to_text(image, index, report, rules, _paint(), duplicates=args.top))
    if rules is not None and not all(rule.passed for rule in rules):
        return usage.EXIT_THRESHOLD
    return 0


def _cmd_which(args: argparse.Namespace) -> int:
    from . import which
    from .layers import open_for

    image = open_for(args)
    index = PathIndex(image.layers)
    results = which.explain_paths(index, [parse_path(p) for p in args.paths])
    print(which.to_json(image, results) if args.json else which.to_text(image, results, _paint()))
    return 0 if all(r.node is not None for r in results) else 1
