"""A user namespace in which the caller is root, with its own mount and PID namespaces.

What ``layerfs shell``/``run``/``unshare`` run in, as ``podman unshare`` does:
the caller's uid and gid become 0, and the subordinate ids ``/etc/subuid`` and
``/etc/subgid`` grant it become 1, 2, ... (mapped by the setuid helpers
``newuidmap``/``newgidmap``), so an image's owners are real there: its uid 1000
is 1000. Without subordinate ids only the caller's own ids are mapped (the
single-id map any user may write); every other id then shows as the overflow id
(65534) and cannot be given to a file.

Processes: this one (outside) forks a child that unshares the user namespace;
this one writes the child's id maps (only a process outside may run the
helpers on it); the child, now root inside, unshares a mount namespace (so
what it mounts is seen by no one else) and a PID namespace, and forks the
namespace's first process, which runs the body. When the body returns, or when
any of the three dies (each is killed with its parent), the kernel kills every
process of the PID namespace, and the mount namespace, with every mount in it,
goes away with its last process: nothing is ever mounted in the caller's mount
table.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

from .errors import LayerfsError, MountError
from .libc import libc

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

ALL_IDS = 4294967295
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"


Line = tuple[int, int, int]
"""One line of a uid_map/gid_map: first id inside, first id outside, count."""


@dataclass(frozen=True, slots=True)
class IdMapping:
    """The namespace's uid_map and gid_map."""

    uids: tuple[Line, ...]
    gids: tuple[Line, ...]

    @property
    def subordinate(self) -> bool:
        """Whether ids beyond the caller's own are mapped."""
        return any(len(lines) > 1 or lines[0][2] > 1 for lines in (self.uids, self.gids))


def subordinate_ranges(text: str, user: str, uid: int) -> list[tuple[int, int]]:
    """(start, count) of each range an /etc/subuid-format file grants ``user`` (by
    name or numeric id), in file order."""
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)) or line.lstrip().startswith("#"):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def map_lines(own: int, ranges: list[tuple[int, int]]) -> tuple[Line, ...]:
    """The caller's id as 0, then each subordinate range from 1 on."""
    lines = [(0, own, 1)]
    inside = 1
    for start, count in ranges:
        lines.append((inside, start, count))
        inside += count
    return tuple(lines)


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def plan_mapping(*, uid: int | None = None, gid: int | None = None, subuid: str = SUBUID,
                 subgid: str = SUBGID) -> tuple[IdMapping, str | None]:
    """The maps for this user (or ``uid``/``gid``), and a note to show when only its own
    ids are mapped."""
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    if uid == 0:  # root may map every id as itself
        every = ((0, 0, ALL_IDS),)
        return IdMapping(every, every), None
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    uid_ranges = subordinate_ranges(_read(subuid), user, uid)
    gid_ranges = subordinate_ranges(_read(subgid), user, uid)
    single = IdMapping(((0, uid, 1),), ((0, gid, 1),))
    overflow = _read("/proc/sys/kernel/overflowuid").strip() or "65534"
    consequence = (f"only your own uid and gid are mapped (to 0); files of other owners show "
                   f"as {overflow} (nobody) and cannot be chowned to (-o squash_to_root shows "
                   f"them as root's)")
    if not uid_ranges or not gid_ranges:
        missing = " and ".join(p for p, r in ((subuid, uid_ranges), (subgid, gid_ranges)) if not r)
        return single, (f"no subordinate ids for {user} in {missing}: {consequence}; to map "
                        f"them, as root: usermod --add-subuids 100000-165535 "
                        f"--add-subgids 100000-165535 {user}")
    helpers = [h for h in ("newuidmap", "newgidmap") if shutil.which(h) is None]
    if helpers:
        return single, (f"{' and '.join(helpers)} not found, so your subordinate ids cannot be "
                        f"mapped: {consequence}; install the uidmap package")
    return IdMapping(map_lines(uid, uid_ranges), map_lines(gid, gid_ranges)), None


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _knob(name: str) -> str | None:
    value = _read(f"/proc/sys/{name}").strip()
    return value or None


def unshare_failure(code: int) -> str:
    """Why a user namespace could not be made, and what to do: one line."""
    if _knob("user/max_user_namespaces") == "0":
        return ("user namespaces are disabled (user.max_user_namespaces = 0); as root: "
                "sysctl -w user.max_user_namespaces=15000")
    if _knob("kernel/unprivileged_userns_clone") == "0":
        return ("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone "
                "= 0); as root: sysctl -w kernel.unprivileged_userns_clone=1")
    if _knob("kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns = 1); as root: sysctl -w "
                "kernel.apparmor_restrict_unprivileged_userns=0, or give layerfs an "
                "AppArmor profile with 'userns,'")
    if code == errno.ENOSPC:
        return ("no user namespace left (user.max_user_namespaces reached); as root: raise "
                "it with sysctl -w user.max_user_namespaces=15000")
    return f"cannot make a user namespace: {os.strerror(code)}"


def _die_with_parent() -> None:
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")


def _write_maps(pid: int, mapping: IdMapping) -> None:
    """Give the namespace of ``pid`` its maps (from outside it)."""
    root = os.geteuid() == 0
    if mapping.subordinate and not root:
        for helper, lines in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [str(n) for line in lines for n in line]
            result = subprocess.run([helper, str(pid), *args], capture_output=True, text=True)
            if result.returncode != 0:
                message = (result.stderr.strip().splitlines() or ["failed"])[-1]
                raise MountError(f"{helper}: {message} (check your lines in {SUBUID} and "
                                 f"{SUBGID})")
        return
    # Any user may map its own ids, once setgroups(2) is denied in the namespace;
    # root may write any map.
    writes = [] if root else [("setgroups", "deny")]
    writes += [(name, "".join("%d %d %d\n" % line for line in lines))
               for name, lines in (("uid_map", mapping.uids), ("gid_map", mapping.gids))]
    for name, text in writes:
        with open(f"/proc/{pid}/{name}", "w") as file:
            file.write(text)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _inside(parent: int, ready: int, go: int, mapping: IdMapping,
            body: Callable[[], int]) -> None:
    """The forked child: unshare, wait for the maps, then run ``body`` as PID 1."""
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    try:
        _check(libc.unshare(CLONE_NEWUSER), "unshare")
    except OSError as exc:
        os.write(ready, str(exc.errno).encode())
        os._exit(1)
    os.write(ready, b"0")
    os.close(ready)
    if os.read(go, 1) != b"1":
        os._exit(1)  # the maps could not be written: the parent says why
    os.close(go)
    try:
        if mapping.subordinate:
            os.setgroups([])  # the caller's other groups would show as the overflow id
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        # Nothing mounted here may reach the caller's namespace.
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount")
    except OSError as exc:
        # A namespace without the powers it should give (AppArmor's restriction).
        print(f"layerfs: {unshare_failure(exc.errno)} ({exc.strerror})", file=sys.stderr)
        os._exit(1)
    first = os.fork()
    if first == 0:
        _die_with_parent()
        code = 1
        try:
            code = body()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except LayerfsError as exc:
            print(f"layerfs: {exc}", file=sys.stderr)
        except BaseException:  # noqa: BLE001 - report, then leave with the namespace
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _ignore_terminal_signals()
    _, status = os.waitpid(first, 0)
    os._exit(_exit_code(status))


def _ignore_terminal_signals() -> None:
    """^C and ^\\ are for the command inside (a shell, say); the processes that only
    wait for it stay."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def run_in_namespace(mapping: IdMapping, body: Callable[[], int]) -> int:
    """Run ``body()`` as root of new user, mount and PID namespaces (as their first
    process, in a forked child); its return value is the exit status returned. A
    SIGTERM or SIGHUP to this process ends the namespace."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            _inside(parent, ready_w, go_r, mapping, body)
        except BaseException:  # noqa: BLE001 - the child must never return into the caller
            traceback.print_exc()
        os._exit(1)
    os.close(ready_w)
    os.close(go_r)
    try:
        answer = os.read(ready_r, 16)
        os.close(ready_r)
        if answer != b"0":
            raise MountError(unshare_failure(int(answer or errno.EPERM)))
        _write_maps(child, mapping)
        os.write(go_w, b"1")
    except BaseException:
        os.close(go_w)
        os.waitpid(child, 0)
        raise
    os.close(go_w)

    def end(signum: int, frame: object) -> None:
        os.kill(child, signal.SIGKILL)  # the rest of the namespace dies with it

    _ignore_terminal_signals()
    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGHUP, end)
    _, status = os.waitpid(child, 0)
    return _exit_code(status)
