"""Making and removing a FUSE mount: the /dev/fuse descriptor for a mountpoint.

As root (also root of a user namespace) the descriptor is opened here and
handed to mount(2) in the mount data (``fd=N,rootmode=...``); as a normal
user (or when mount(2) is refused, or ``auto_unmount`` is asked for)
``fusermount3`` mounts and passes the descriptor back over a socket named
by ``_FUSE_COMMFD``, as SCM_RIGHTS. Options are the libfuse-style strings
``layerfs.mount.fuse_options`` builds. Every failure is one
:class:`~layerfs.errors.MountError` saying why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass, field

from ..errors import MountError
from ..libc import libc

FUSE_DEVICE = "/dev/fuse"

# mount(2) flags, from <sys/mount.h>.
_FLAG_OPTIONS = {
    "ro": (1, True), "rw": (1, False),
    "nosuid": (2, True), "suid": (2, False),
    "nodev": (4, True), "dev": (4, False),
    "noexec": (8, True), "exec": (8, False),
    "sync": (16, True), "async": (16, False),
    "dirsync": (128, True),
    "noatime": (1024, True), "atime": (1024, False),
    "nodiratime": (2048, True), "diratime": (2048, False),
    "relatime": (1 << 21, True), "norelatime": (1 << 21, False),
    "strictatime": (1 << 24, True),
    "lazytime": (1 << 25, True), "nolazytime": (1 << 25, False),
}
_FLAG_NAMES = {bit: name for name, (bit, on) in _FLAG_OPTIONS.items() if on}
MS_NOSUID, MS_NODEV = 2, 4
MNT_FORCE, MNT_DETACH = 1, 2
_KERNEL_DATA_OPTIONS = {"default_permissions", "allow_other"}
_KERNEL_VALUE_OPTIONS = {"max_read", "blksize"}
_ENGINE_OPTIONS = {"auto_unmount"}


@dataclass
class Mount:
    """A live mount: the device descriptor and, with fusermount3's
    auto_unmount, the socket whose closing tells the watcher to unmount."""

    fd: int
    mountpoint: str
    target: str
    """The mountpoint resolved before mounting: resolving it later would be a
    request to a daemon that may not be serving."""
    by_fusermount: bool
    allow_root: bool = False
    watcher_socket: socket.socket | None = None
    watcher: subprocess.Popen | None = field(default=None, repr=False)


@dataclass
class ParsedOptions:
    flags: int = MS_NOSUID | MS_NODEV  # what libfuse and fusermount3 default to
    data: list[str] = field(default_factory=list)
    fsname: str = ""
    subtype: str = ""
    auto_unmount: bool = False
    allow_other: bool = False
    allow_root: bool = False
    """Others than root and the owner are turned away by the engine (the kernel
    only knows allow_other, which this implies)."""
    given: list[str] = field(default_factory=list)


def _unescape_option(value: str) -> str:
    """An option value as libfuse reads it: a backslash keeps the next character."""
    return re.sub(r"\\(.)", r"\1", value)


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


def parse_options(options: set[str] | frozenset[str]) -> ParsedOptions:
    parsed = ParsedOptions()
    for option in sorted(options):
        key, _, value = option.partition("=")
        parsed.given.append(option)
        if key in _FLAG_OPTIONS and not value:
            bit, on = _FLAG_OPTIONS[key]
            parsed.flags = parsed.flags | bit if on else parsed.flags & ~bit
        elif key in _KERNEL_DATA_OPTIONS and not value:
            parsed.data.append(key)
            parsed.allow_other |= key == "allow_other"
        elif key in _KERNEL_VALUE_OPTIONS and value.isdigit():
            parsed.data.append(option)
        elif key == "fsname" and value:
            parsed.fsname = _unescape_option(value)  # "\\," is a comma, as in libfuse
        elif key == "subtype" and value:
            parsed.subtype = value
        elif key in _ENGINE_OPTIONS and not value:
            parsed.auto_unmount = True
        elif key == "allow_root" and not value:
            parsed.allow_root = parsed.allow_other = True
        else:
            raise MountError(f"-o {option}: unknown FUSE mount option")
    return parsed


def mount(mountpoint: str, options: set[str] | frozenset[str]) -> Mount:
    """Mount a FUSE filesystem at ``mountpoint``: the descriptor to serve it on."""
    parsed = parse_options(options)
    made = _mount(mountpoint, parsed)
    made.allow_root = parsed.allow_root
    return made


def _mount(mountpoint: str, parsed: ParsedOptions) -> Mount:
    if parsed.allow_root and "allow_other" in parsed.data:
        raise MountError("-o allow_root and -o allow_other: choose one")
    if not os.path.exists(FUSE_DEVICE):
        raise MountError(f"{FUSE_DEVICE}: no FUSE device on this machine (load the fuse module)")
    if os.geteuid() == 0 and not parsed.auto_unmount:
        try:
            return _mount_syscall(mountpoint, parsed)
        except PermissionError:
            # Root of a user namespace the kernel does not let mount FUSE itself.
            if shutil.which("fusermount3") is None:
                raise MountError(f"{mountpoint}: mount(2) refused (EPERM) and fusermount3 "
                                 "is not installed") from None
    return _mount_fusermount(mountpoint, parsed)


def _mount_syscall(mountpoint: str, parsed: ParsedOptions) -> Mount:
    try:
        fd = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise MountError(f"{FUSE_DEVICE}: cannot open: {exc.strerror}") from None
    try:
        st = os.stat(mountpoint)
    except OSError as exc:
        os.close(fd)
        raise MountError(f"{mountpoint}: {_mount_reason(exc.errno or 0)}") from None
    target = os.path.realpath(mountpoint)
    data = ",".join([f"fd={fd}", f"rootmode={stat.S_IFMT(st.st_mode):o}",
                     f"user_id={os.getuid()}", f"group_id={os.getgid()}", *parsed.data,
                     *(["allow_other"] if parsed.allow_root and "allow_other" not in parsed.data
                       else [])])
    fstype = f"fuse.{parsed.subtype}" if parsed.subtype else "fuse"
    source = parsed.fsname or parsed.subtype or "fuse"
    result = libc.mount(os.fsencode(source), os.fsencode(mountpoint), fstype.encode(),
                        parsed.flags, data.encode())
    if result != 0:
        err = ctypes.get_errno()
        os.close(fd)
        if err == 1:  # EPERM
            raise PermissionError(err, os.strerror(err))
        raise MountError(f"{mountpoint}: mount failed: {_mount_reason(err)}")
    return Mount(fd=fd, mountpoint=mountpoint, target=target, by_fusermount=False)


def _mount_reason(err: int) -> str:
    reasons = {16: "mountpoint is busy", 2: "mountpoint does not exist",
               20: "mountpoint is not a directory", 19: "the kernel has no FUSE support",
               22: "invalid mount options"}
    return reasons.get(err, os.strerror(err))


def _fusermount_options(parsed: ParsedOptions) -> str:
    opts = [name for bit, name in sorted(_FLAG_NAMES.items()) if parsed.flags & bit]
    opts += parsed.data
    if parsed.allow_root:
        opts.append("allow_root")
    if parsed.fsname:
        opts.append(f"fsname={_escape_option(parsed.fsname)}")
    if parsed.subtype:
        opts.append(f"subtype={parsed.subtype}")
    if parsed.auto_unmount:
        opts.append("auto_unmount")
    return ",".join(opt.replace(",", "\\,") for opt in opts)


def _check_fusermount(parsed: ParsedOptions) -> str:
    program = shutil.which("fusermount3")
    if program is None:
        raise MountError("fusermount3: not found; install the fuse3 package to mount as a user")
    if os.geteuid() != 0 and not os.stat(program).st_mode & stat.S_ISUID:
        raise MountError(f"{program}: not setuid root, so it cannot mount for a normal user")
    if parsed.allow_other and os.geteuid() != 0 and not _user_allow_other():
        option = "allow_root" if parsed.allow_root else "allow_other"
        raise MountError(f"-o {option}: needs 'user_allow_other' in /etc/fuse.conf "
                         "to be used by a normal user")
    return program


def _user_allow_other() -> bool:
    try:
        with open("/etc/fuse.conf") as conf:
            return any(line.split("#")[0].strip() == "user_allow_other" for line in conf)
    except OSError:
        return False


def _mount_fusermount(mountpoint: str, parsed: ParsedOptions) -> Mount:
    program = _check_fusermount(parsed)
    target = os.path.realpath(mountpoint)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
    try:
        watcher = subprocess.Popen([program, "-o", _fusermount_options(parsed), "--", mountpoint],
                                   env=env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        ours.close()
        theirs.close()
        raise MountError(f"{program}: cannot run: {exc.strerror}") from None
    theirs.close()
    try:
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    except OSError:
        fds = []
    if not fds:
        watcher.wait()
        message = watcher.stderr.read().decode(errors="replace").strip() if watcher.stderr else ""
        ours.close()
        reason = (message.splitlines() or [f"fusermount3 exited with {watcher.returncode}"])[-1]
        raise MountError(f"{mountpoint}: cannot mount: {reason}")
    fd = fds[0]
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fd, False)
    if watcher.stderr:
        watcher.stderr.close()
    if not parsed.auto_unmount:
        watcher.wait()
        ours.close()
        return Mount(fd=fd, mountpoint=mountpoint, target=target, by_fusermount=True)
    # fusermount3 stays, watching the socket: when our end closes (we exit or
    # die) it unmounts. Keep the end open as long as we serve.
    return Mount(fd=fd, mountpoint=mountpoint, target=target, by_fusermount=True,
                 watcher_socket=ours, watcher=watcher)


def is_mounted(target: str) -> bool:
    """Whether something is mounted at the resolved path ``target``, read from
    mountinfo (a stat could be a request nobody answers)."""
    with open("/proc/self/mountinfo") as mountinfo:
        return any(_unescape(line.split()[4]) == target for line in mountinfo)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Remove the mount at ``mountpoint`` (MNT_DETACH / ``-z`` when ``lazy``)."""
    if os.geteuid() == 0:
        if libc.umount2(os.fsencode(mountpoint), MNT_DETACH if lazy else 0) == 0:
            return
        err = ctypes.get_errno()
        if err != 1:  # EPERM: root of a user namespace; fusermount3 may manage it
            raise MountError(f"{mountpoint}: cannot unmount: {os.strerror(err)}")
    program = shutil.which("fusermount3")
    if program is None:
        raise MountError(f"{mountpoint}: cannot unmount: fusermount3 not found")
    result = subprocess.run([program, "-u", *(["-z"] if lazy else []), "--", mountpoint],
                            capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise MountError(f"{mountpoint}: cannot unmount: {message}")
