"""``layerfs shell``, ``layerfs run`` and ``layerfs unshare``: an image explored as root
of a user namespace (layerfs/userns.py), where its owners are real.

The image is opened (tar layers unpacked into the user's layer cache) before the
namespace is entered, so the cache is written as the user writes it anywhere and
a bad image fails before anything starts. Inside, the namespace's first process
forks the FUSE daemon (in its own session, so ^C reaches only the command),
waits for the mount, runs the command in it (or chrooted into it) and, once the
command exits, unmounts; the mount never exists outside the namespace.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

from .cliopts import add_image_options, image_request
from .errors import LayerfsError, UsageError
from .fusecheck import check_fuse
from .idmap import build_id_map
from .mountplan import MountPlan, open_image, plan_namespace_mount, present_layers
from .options import parse_options
from .userns import IdMapping, plan_mapping, run_in_namespace

MOUNT_WAIT = 120.0
"""How long the daemon may take to mount (a large index's root is read first)."""
UNMOUNT_WAIT = 30.0


@dataclass
class Session:
    """What the namespace's first process needs: all decided outside."""

    plan: MountPlan
    mountpoint: str
    command: list[str]
    chroot: bool = False
    debug: bool = False
    log: str | None = None


def register(commands: argparse._SubParsersAction) -> None:
    for name in ("shell", "run"):
        is_run = name == "run"
        parser = commands.add_parser(
            name, help=("run a command in an image mounted in a user namespace where you are root"
                        if is_run else "a shell in an image mounted in a user namespace where "
                                       "you are root"),
            description="Enter a user namespace in which you are root (your subordinate ids "
                        "from /etc/subuid and /etc/subgid mapped through newuidmap/newgidmap, "
                        "so the image's owners show as in the image; without them only your "
                        "own ids, as 0), and a mount namespace; mount IMAGE there and run "
                        + ("CMD" if is_run else "$SHELL") + " in the mount (or chrooted into it "
                        "with --chroot). The mount exists only in that namespace and goes away "
                        "with it. With --upper the mount is writable, in the kernel overlay's "
                        "userxattr format (user.overlay.* xattrs).")
        parser.add_argument("image", metavar="IMAGE")
        parser.add_argument("--upper", metavar="DIR", help="a writable upper dir on top")
        parser.add_argument("--work", metavar="DIR",
                            help="the work dir for --upper (default: .NAME.work beside it)")
        parser.add_argument("--chroot", action="store_true",
                            help="run inside the image's root, as chroot does (this runs the "
                                 "image's own programs)")
        parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTS",
                            help="mount options, as for mount (squash_to_root, uidmapping=, "
                                 "redirect_dir=, volatile, ...)")
        add_image_options(parser)
        parser.add_argument("--quiet", "-q", action="store_true",
                            help="no progress display while unpacking layers")
        parser.add_argument("--debug", action="store_true",
                            help="log every FUSE request (to --log, else stderr)")
        parser.add_argument("--log", metavar="FILE", help="the daemon's log (default: none)")
        if is_run:
            parser.add_argument("argv", nargs="+", metavar="CMD",
                                help="the command and its arguments (after --)")
        parser.set_defaults(run=_cmd_run)

    unshare = commands.add_parser(
        "unshare", help="run a command in the user namespace of shell and run, without a mount",
        description="Run CMD (default $SHELL) as root of a user namespace with the same id "
                    "maps as shell and run, e.g. to read or commit an upper dir whose files "
                    "carry the image's owners: layerfs unshare -- layerfs commit UPPER -o L.tar")
    unshare.add_argument("argv", nargs="*", metavar="CMD")
    unshare.set_defaults(run=_cmd_unshare)


def _namespace_mapping() -> IdMapping:
    mapping, note = plan_mapping()
    if note is not None:
        print(f"layerfs: {note}", file=sys.stderr)
    return mapping


def _cmd_run(args: argparse.Namespace) -> int:
    options = parse_options(args.options)
    if options.lowerdirs or options.upperdir or options.workdir:
        raise UsageError("give the image as IMAGE and the upper dir with --upper")
    if args.work and not args.upper:
        raise UsageError("a work dir needs an upper dir (--upper)")
    ids = build_id_map(options.ids)
    check_fuse(through_fusermount=False)  # before anything: /dev/fuse must be usable
    command = getattr(args, "argv", None) or []
    layers = present_layers(open_image(image_request(args)), quiet=True)
    plan = plan_namespace_mount(layers, options, upper=_absolute(args.upper),
                                work=_absolute(args.work), ids=ids)
    mapping = _namespace_mapping()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    usable = runtime if runtime and os.access(runtime, os.W_OK | os.X_OK) else None
    # Only ever mounted on inside the namespace; removed when the session ends (an
    # empty directory stays if this process is killed with SIGKILL).
    mountpoint = tempfile.mkdtemp(prefix="layerfs-run-", dir=usable)
    session = Session(plan, mountpoint, command, chroot=args.chroot, debug=args.debug,
                      log=_absolute(args.log))
    try:
        return run_in_namespace(mapping, lambda: _serve_and_run(session))
    finally:
        try:
            os.rmdir(mountpoint)
        except OSError:
            pass


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def _cmd_unshare(args: argparse.Namespace) -> int:
    command = args.argv or [os.environ.get("SHELL") or "/bin/sh"]
    return run_in_namespace(_namespace_mapping(), lambda: _run_command(command, cwd=None))


# -- inside the namespace, as its first process -----------------------------------------

def _serve_and_run(session: Session) -> int:
    daemon = os.fork()
    if daemon == 0:
        _daemon(session)
    if not _wait_for_mount(session.mountpoint, daemon):
        return 1
    try:
        if session.chroot:
            command = session.command or [_shell_inside(session.mountpoint)]
            return _run_command(command, cwd=None, root=session.mountpoint)
        command = session.command or [os.environ.get("SHELL") or "/bin/sh"]
        return _run_command(command, cwd=session.mountpoint)
    finally:
        _stop(daemon)


def _stop(daemon: int) -> None:
    """Let the daemon unmount and sync the upper; past UNMOUNT_WAIT, the namespace's
    end kills it (as a kill -9 would: every change on disk is complete)."""
    os.kill(daemon, signal.SIGTERM)
    deadline = time.monotonic() + UNMOUNT_WAIT
    while time.monotonic() < deadline:
        if os.waitpid(daemon, os.WNOHANG)[0]:
            return
        time.sleep(0.01)
    print("layerfs: the daemon did not stop in time; ending the namespace kills it",
          file=sys.stderr)


def _daemon(session: Session) -> None:
    """The FUSE daemon (a forked child that never returns)."""
    from .mount import serve

    code = 1
    try:
        os.setsid()  # no terminal: ^C is for the command
        plan = session.plan
        index, upper = plan.open()
        serve(index, session.mountpoint, foreground=True, debug=session.debug,
              log_file=session.log or (None if session.debug else os.devnull),
              upper=upper, **plan.serve_options())
        code = 0
    except LayerfsError as exc:
        print(f"layerfs: {exc}", file=sys.stderr)
    except OSError as exc:
        where = os.fsdecode(exc.filename) + ": " if exc.filename is not None else ""
        print(f"layerfs: {where}{exc.strerror or exc}", file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a forked child must never return
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _is_mounted(mountpoint: str) -> bool:
    """From mountinfo: a stat of the mountpoint would wait for the daemon."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4].encode().decode("unicode_escape") == target
                   for line in mountinfo)


def _wait_for_mount(mountpoint: str, daemon: int) -> bool:
    deadline = time.monotonic() + MOUNT_WAIT
    while time.monotonic() < deadline:
        if _is_mounted(mountpoint):
            return True
        pid, _ = os.waitpid(daemon, os.WNOHANG)
        if pid:
            return False  # it said why
        time.sleep(0.01)
    print(f"layerfs: {mountpoint}: the daemon did not mount in {MOUNT_WAIT:.0f} s",
          file=sys.stderr)
    return False


def _shell_inside(root: str) -> str:
    shell = os.environ.get("SHELL") or "/bin/sh"
    return shell if os.path.lexists(root + shell) else "/bin/sh"


def _run_command(command: list[str], *, cwd: str | None, root: str | None = None) -> int:
    def enter_root() -> None:
        os.chroot(root)  # type: ignore[arg-type]
        os.chdir("/")

    try:
        process = subprocess.Popen(command, cwd=cwd,
                                   preexec_fn=enter_root if root is not None else None)
    except OSError as exc:
        print(f"layerfs: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127  # as a shell says "command not found"
    # The command owns the terminal's signals from here on (it got the default
    # dispositions at exec).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    code = process.wait()
    return 128 - code if code < 0 else code
