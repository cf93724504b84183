"""The registry's part of the command line: ``layerfs pull`` and the options that let
``layerfs mount docker://...`` reach a registry.

``register(commands)`` is called once by :mod:`layerfs.cli` with its subcommand
table; :func:`remote_options` turns parsed arguments into :class:`RemoteOptions`.
"""

from __future__ import annotations

import argparse

from ..unpack import LayerCache
from .pull import DEFAULT_JOBS, RemoteOptions, pull
from .reference import parse_reference

_CACHE_HELP = "the layer cache (default: $XDG_CACHE_HOME/layerfs, i.e. ~/.cache/layerfs)"


def register(commands: "argparse._SubParsersAction") -> None:
    parser = commands.add_parser(
        "pull", help="fetch an image from a registry into the layer cache",
        description="Fetch REFERENCE ([docker://]REGISTRY/REPO[:TAG|@DIGEST]) over the OCI "
                    "distribution API: the platform's manifest, the config and the layers, "
                    "every digest verified, layers unpacked into the layer cache (reused when "
                    "already there). Interrupted pulls resume where they stopped.")
    parser.add_argument("reference", metavar="REFERENCE")
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                        help="which platform of a multi-arch image (default: this host's)")
    parser.add_argument("-o", "--output", metavar="OCI_LAYOUT",
                        help="also write the image to this OCI layout directory")
    parser.add_argument("--cache-dir", metavar="DIR", help=_CACHE_HELP)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    add_remote_arguments(parser)
    parser.set_defaults(run=_cmd_pull)
    mount = commands.choices.get("mount")
    if mount is not None:
        group = add_remote_arguments(mount)
        group.add_argument("--lazy", action="store_true",
                           help="mount once the tables of contents are fetched and fetch "
                                "file data on first open (zstd:chunked, eStargz and "
                                "uncompressed layers; other layers are pulled whole in the background, "
                                "and reads wait for them)")


def add_remote_arguments(parser: argparse.ArgumentParser) -> "argparse._ArgumentGroup":
    group = parser.add_argument_group("registry images (docker://REGISTRY/REPO:TAG)")
    group.add_argument("--insecure", action="store_true",
                       help="do not verify the registry's TLS certificate, and use plain "
                            "HTTP when it does not speak TLS")
    group.add_argument("--creds", metavar="USER[:PASSWORD]",
                       help="credentials (default: from the auth files of podman and docker)")
    group.add_argument("--authfile", metavar="FILE",
                       help="read credentials from this auth.json / config.json only")
    group.add_argument("--jobs", "-j", type=int, default=DEFAULT_JOBS, metavar="N",
                       help=f"layers fetched in parallel (default {DEFAULT_JOBS})")
    group.add_argument("--retries", type=int, default=RemoteOptions.retries, metavar="N",
                       help="retries of a failed request, with backoff "
                            f"(default {RemoteOptions.retries})")
    return group


def remote_options(args: argparse.Namespace) -> RemoteOptions:
    return RemoteOptions(insecure=getattr(args, "insecure", False),
                         creds=getattr(args, "creds", None),
                         authfile=getattr(args, "authfile", None),
                         jobs=getattr(args, "jobs", DEFAULT_JOBS),
                         retries=getattr(args, "retries", RemoteOptions.retries),
                         lazy=getattr(args, "lazy", False))


def _cmd_pull(args: argparse.Namespace) -> int:
    result = pull(parse_reference(args.reference), remote_options(args),
                  LayerCache(args.cache_dir), platform=args.platform, layout=args.output,
                  quiet=args.quiet)
    print(result.summary())
    return 0
