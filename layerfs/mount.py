"""The life of a mount: checks, the engine's mount, daemonizing, serving, unmounting.

Everything that can fail is checked before the process leaves the
terminal, so the user sees one clear line; only a live mount is handed to
the background daemon. SIGINT and SIGTERM unmount cleanly. The FUSE engine
(:mod:`layerfs.engines`) is chosen by name: the option given, else the
``LAYERFS_ENGINE`` environment variable, else the default.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import signal
import stat
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Sequence

import trio

from .deferred import DeferredIndex
from .engines import Engine, default_engine, open_engine
from .errors import MountError
from .fs import LayerOperations
from .fusecheck import check_fuse
from .idmap import IDENTITY, IdMap
from .index import PathIndex
from .logfile import daemon_log_file
from .mountrecord import mount_record
from .prefetch import warm_layers
from .upper import Upper
from .xattrcheck import image_shows_xattrs, layers_to_walk

log = logging.getLogger(__name__)

FUSE_DEVICE = "/dev/fuse"


def is_stale_mount(path: str) -> bool:
    """A FUSE mount whose daemon died ("Transport endpoint is not connected").

    statfs always reaches the daemon, unlike stat, which the kernel may answer
    from its cache."""
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def check_mountpoint(mountpoint: str) -> None:
    if is_stale_mount(mountpoint):
        # Nobody serves it any more, so clearing it loses nothing.
        log.warning("%s: clearing a stale mount left by a dead daemon", mountpoint)
        unmount(mountpoint, lazy=True)
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise MountError(f"{mountpoint}: mountpoint does not exist") from None
    except OSError as exc:
        raise MountError(f"{mountpoint}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"{mountpoint}: mountpoint is not a directory")
    if os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint}: mountpoint is busy (something is mounted there)")


def check_fuse_available(options: set[str] | frozenset[str] = frozenset()) -> None:
    check_fuse(options)  # rootless: /dev/fuse access, setuid fusermount3, user_allow_other


def fuse_options(extra: set[str], *, fsname: str = "layerfs", writable: bool = False,
                 subtype: str = "layerfs") -> set[str]:
    options = {"default_permissions", f"fsname={fsname}", f"subtype={subtype}"}
    if not writable:
        options.add("ro")
    return options | extra


def setup_logging(debug: bool, log_file: str | None, foreground: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    if log_file:
        handler: logging.Handler = logging.FileHandler(log_file)
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        fmt = logging.Formatter("layerfs[%(process)d]: %(levelname)s: %(message)s")
    else:
        handler = logging.NullHandler()
    handler.setFormatter(fmt)
    root.handlers[:] = [handler]


READAHEAD_KB = 1024


def _device_of_mount(target: str) -> str | None:
    """"major:minor" of the filesystem mounted at the resolved path ``target``,
    read from mountinfo: any stat of the mountpoint now (realpath included)
    would be a FUSE request that nobody serves yet."""
    device = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") == target:
                device = fields[2]  # the last one: the mount on top
    return device


def tune_readahead(target: str) -> None:
    """Let the kernel read ahead 1 MiB through the mount at the resolved path
    ``target`` instead of 128 KiB, so sequential reads reach the daemon in
    1 MiB requests (root only: best effort)."""
    try:
        device = _device_of_mount(target)
        if device is None:
            return
        with open(f"/sys/class/bdi/{device}/read_ahead_kb", "w") as knob:
            knob.write(str(READAHEAD_KB))
    except OSError as exc:
        log.debug("%s: read-ahead left as it is: %s", target, exc)


def _daemonize() -> None:
    """Fork into the background; the parent exits 0 since the mount is live."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    # Descriptors above 2 stay open: the layer cache's shared locks, held so
    # that `layerfs cache prune` leaves the layers of a live mount alone.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


async def _serve(engine: Engine, ops: LayerOperations, deferred: DeferredIndex | None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_terminate_on_signal, engine)
        nursery.start_soon(_complete_index, ops, deferred)
        await engine.serve()
        nursery.cancel_scope.cancel()


async def _complete_index(ops: LayerOperations, deferred: DeferredIndex | None) -> None:
    """Once the layers are all there (a deferred index: fetched first), read the rest
    of the index in the background."""
    if deferred is not None:
        await deferred.run()
        if deferred.index is None:
            return  # failed: requests get EIO
        await ops.until_ready()
    async with trio.open_nursery() as nursery:
        walked: list[str] = []
        if ops.xattrs == "auto" and ops.upper is None:
            walked = layers_to_walk(ops.index.views)  # the walk reads them ahead
            nursery.start_soon(_check_xattrs, ops)
        await _read_index(ops, skip_read_ahead=walked)


async def _check_xattrs(ops: LayerOperations) -> None:
    """-o xattrs=auto on a read-only mount: once no layer is known to hold xattrs,
    GETXATTR is answered ENOSYS (see layerfs/xattrcheck.py)."""
    started = time.monotonic()
    try:
        found = await image_shows_xattrs(ops.index.views)
    except Exception:  # noqa: BLE001 - the check must never stop the mount
        log.exception("cannot tell whether the layers hold xattrs: they are served")
        return
    if found:
        log.info("the layers hold xattrs: they are served")
        return
    ops.image_without_xattrs = True
    log.info("no layer holds xattrs (known in %.1f s): GETXATTR is answered ENOSYS from now "
             "on, so the kernel stops asking (-o xattrs=on serves them)",
             time.monotonic() - started)


QUIET_SPELL = 0.05
"""How long no request must have come before the index is read in the background."""


async def _read_index(ops: LayerOperations, skip_read_ahead: Sequence[str] = ()) -> None:
    """Read the rest of the layers' directories into the index while no requests
    come, a few milliseconds at a time (the mount is live meanwhile: a request
    for a directory not read yet reads it at once, and a busy mount reads
    only what it is asked for); the layers' metadata is read ahead meanwhile."""
    started = time.monotonic()
    index = ops.index
    async with trio.open_nursery() as nursery:
        nursery.start_soon(warm_layers, [layer.root for layer in reversed(index.layers)
                                         if layer.root not in skip_read_ahead])
        while True:
            quiet_for = time.monotonic() - ops.last_request
            if quiet_for < QUIET_SPELL:
                await trio.sleep(QUIET_SPELL - quiet_for)
                continue
            if not index.load_pending(budget=0.005):
                break
            await trio.sleep(0)
        nursery.cancel_scope.cancel()
    log.info("index complete: %d entries in %.1f s", len(index), time.monotonic() - started)


async def _terminate_on_signal(engine: Engine) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            engine.terminate()
            return


def serve(index: PathIndex | DeferredIndex, mountpoint: str, *,
          extra_options: set[str] = frozenset(), foreground: bool = False,
          debug: bool = False, log_file: str | None = None,
          fsname: str = "layerfs", upper: Upper | None = None,
          subtype: str = "layerfs", engine: str | None = None,
          ids: IdMap = IDENTITY, xattrs: str = "auto") -> None:
    """Mount ``index`` at ``mountpoint`` and serve until unmounted or signalled;
    writable through ``upper`` if given; on the FUSE engine named ``engine``
    (None: $LAYERFS_ENGINE, else the default). A deferred index is completed
    in the background while the mount is live."""
    fuse = open_engine(engine or default_engine(), debug=debug)
    check_mountpoint(mountpoint)
    check_fuse_available(extra_options)
    resolved = os.path.realpath(mountpoint)  # now: once mounted, a stat of it would hang
    after_init = (lambda: tune_readahead(resolved)) if os.geteuid() == 0 else None
    ops = LayerOperations(index, debug=debug, upper=upper, after_init=after_init,
                          zero_message_opens=fuse.zero_message_opens,
                          ids=ids,  # idmap: owners shown through the mount
                          xattrs=xattrs)
    with ExitStack() as cleanup:
        ops.open_layers()
        cleanup.callback(ops.close_layers)
        if upper is not None:
            cleanup.callback(upper.disk.sync)
        try:
            fuse.mount(ops, mountpoint, fuse_options(set(extra_options), fsname=fsname,
                                                     writable=upper is not None,
                                                     subtype=subtype))
        except (RuntimeError, OSError) as exc:
            raise MountError(f"{mountpoint}: cannot mount ({exc})") from None
        unmount = [True]
        cleanup.callback(lambda: fuse.close(unmount[0]))
        if not foreground:
            log_file = log_file or daemon_log_file(resolved)
            _daemonize()
        setup_logging(debug, log_file, foreground)
        cleanup.enter_context(mount_record(
            resolved, image=fsname, engine=fuse.name,
            upper=os.fsdecode(upper.disk.root) if upper is not None else None))
        deferred = index if isinstance(index, DeferredIndex) else None
        if deferred is None:
            log.info("serving %d layers at %s (engine %s)", len(index.layers), mountpoint,
                     fuse.name)
        else:
            log.info("serving %s; its files once %s are present", mountpoint,
                     deferred.pending.description)
        trio.run(_serve, fuse, ops, deferred)
        # serve returns on a signal (we must unmount) or after an external
        # umount (nothing left to unmount). From mountinfo: a stat of the
        # mountpoint would be a request nobody serves any more (a hang, once writes
        # dropped its cached attributes).
        unmount[0] = _device_of_mount(resolved) is not None


def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Unmount a layerfs mount, also a stale one whose daemon died."""
    stale = is_stale_mount(mountpoint)
    if not stale:
        try:
            os.stat(mountpoint)
        except FileNotFoundError:
            raise MountError(f"{mountpoint}: no such mountpoint") from None
        except OSError as exc:
            raise MountError(f"{mountpoint}: {exc.strerror}") from None
    if not stale and not os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint}: not mounted")
    lazy = lazy or stale
    if os.geteuid() == 0:
        command = ["umount"] + (["-l"] if lazy else []) + [mountpoint]
    else:
        command = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mountpoint]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise MountError(f"{mountpoint}: cannot unmount: {message}")
