"""The options every command that reads an image shares, defined once.

``mount``, ``inspect``, ``which``, ``diff``, ``usage``, ``compare``, ``commit`` and
``pull`` take the same image options (``--format``, ``--image``, ``--platform``,
``--cache-dir``, the unpack limits) and the same registry options (``--insecure`` or
skopeo's ``--tls-verify=false``, ``--creds``, ``--authfile``, ``--retries``,
``--jobs``, ``--pull``): :func:`add_image_options` adds them to a subcommand's
parser (:func:`add_image_arguments` with ``--quiet``), :func:`remote_options` reads
the registry ones back, :func:`image_request` all of them with the image named (for
:mod:`layerfs.mountplan`), and :func:`image_option_argv` spells them again for a
``layerfs mount`` run as a child.
"""

from __future__ import annotations

import argparse

from .images import FORMS
from .mountplan import ImageRequest
from .registry.offline import DEFAULT_POLICY, PULL_POLICIES
from .registry.pull import DEFAULT_JOBS, RemoteOptions
from .unpack.limits import UnpackLimits

CACHE_HELP = "the layer cache (default: $XDG_CACHE_HOME/layerfs, i.e. ~/.cache/layerfs)"
REGISTRY_GROUP = "registry images (docker://REGISTRY/REPO:TAG)"


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text}: give true or false")


def add_image_options(parser: argparse.ArgumentParser, *, pull_command: bool = False
                      ) -> argparse._ArgumentGroup:
    """The image options and the registry options; ``layerfs pull`` (``pull_command``)
    does not take what only an image on disk takes (``--format``, ``--image``, the
    unpack limits), nor ``--pull``. Returns the registry group, for a command's own options."""
    local = not pull_command
    if local:
        parser.add_argument("--format", choices=list(FORMS),
                            help="the image's form, if not detected")
        parser.add_argument("--image", dest="image_ref", metavar="REF",
                            help="which image of a store or archive: NAME[:TAG], image ID "
                                 "(full or short) or digest (same as IMAGE:REF)")
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                        help="which platform of a multi-arch image (default: this host's)")
    parser.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
    if local:
        parser.add_argument("--max-layer-size", metavar="SIZE",
                            help="refuse a tar layer bigger than SIZE uncompressed, e.g. 64G "
                                 "(default 256G; env LAYERFS_MAX_LAYER_SIZE)")
        parser.add_argument("--max-entries", metavar="N",
                            help="refuse a tar layer with more than N entries (default "
                                 "5000000; env LAYERFS_MAX_ENTRIES)")
    group = parser.add_argument_group(REGISTRY_GROUP)
    group.add_argument("--insecure", action="store_true",
                       help="do not verify the registry's TLS certificate, and use plain "
                            "HTTP when it does not speak TLS")
    group.add_argument("--tls-verify", type=_boolean, nargs="?", const=True, default=None,
                       metavar="BOOL", help="skopeo's spelling: --tls-verify=false is --insecure")
    group.add_argument("--creds", metavar="USER[:PASSWORD]",
                       help="credentials (default: from the auth files of podman and docker)")
    group.add_argument("--authfile", metavar="FILE",
                       help="read credentials from this auth.json / config.json only")
    group.add_argument("--jobs", "-j", type=int, default=DEFAULT_JOBS, metavar="N",
                       help=f"layers fetched in parallel (default {DEFAULT_JOBS})")
    group.add_argument("--retries", type=int, default=RemoteOptions.retries, metavar="N",
                       help="retries of a failed request, with backoff "
                            f"(default {RemoteOptions.retries})")
    if local:
        group.add_argument("--pull", choices=PULL_POLICIES, default=DEFAULT_POLICY,
                           help="when to ask the registry, as podman: newer (default: ask "
                                "it, and use the image pulled before when it cannot be "
                                "reached), always (it must answer), missing (only for an "
                                "image not pulled yet), never (pulled images only)")
    return group


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """The image options, and ``--quiet``: for the commands that read an image and print
    something else than the unpack's progress (which, diff, ls, cat, export, ...)."""
    add_image_options(parser)
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress display while unpacking layers")


def remote_options(args: argparse.Namespace) -> RemoteOptions:
    insecure = getattr(args, "insecure", False) or getattr(args, "tls_verify", None) is False
    return RemoteOptions(insecure=insecure,
                         creds=getattr(args, "creds", None),
                         authfile=getattr(args, "authfile", None),
                         jobs=getattr(args, "jobs", DEFAULT_JOBS),
                         retries=getattr(args, "retries", RemoteOptions.retries),
                         lazy=getattr(args, "lazy", False),
                         # `layerfs pull` asks the registry, always
                         pull=getattr(args, "pull", "always"))


def image_request(args: argparse.Namespace, spec: str | None = None) -> ImageRequest:
    """The image named on the command line (``args.image``), or ``spec``: a second
    image, to which ``--format`` and ``--image`` do not apply."""
    second = spec is not None
    limits = UnpackLimits.from_env(max_layer_size=getattr(args, "max_layer_size", None),
                                   max_entries=getattr(args, "max_entries", None))
    return ImageRequest(spec=spec if second else args.image,
                        form=None if second else getattr(args, "format", None),
                        image_ref=None if second else getattr(args, "image_ref", None),
                        platform=getattr(args, "platform", None),
                        cache_dir=getattr(args, "cache_dir", None), limits=limits,
                        quiet=getattr(args, "quiet", False), remote=remote_options(args))


def image_option_argv(args: argparse.Namespace) -> list[str]:
    """The image and registry options given, as ``layerfs mount`` arguments."""
    argv: list[str] = []
    for option, name in (("--format", "format"), ("--image", "image_ref"),
                         ("--platform", "platform"), ("--cache-dir", "cache_dir"),
                         ("--max-layer-size", "max_layer_size"),
                         ("--max-entries", "max_entries"), ("--creds", "creds"),
                         ("--authfile", "authfile")):
        value = getattr(args, name, None)
        if value is not None:
            argv += [option, str(value)]
    options = remote_options(args)
    if options.insecure:
        argv.append("--insecure")
    if options.retries != RemoteOptions.retries:
        argv += ["--retries", str(options.retries)]
    if options.jobs != DEFAULT_JOBS:
        argv += ["--jobs", str(options.jobs)]
    if getattr(args, "pull", None) is not None:
        argv += ["--pull", args.pull]
    return argv
