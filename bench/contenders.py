"""The filesystems under test and their mount lifecycles.

A :class:`Contender` knows how to mount a :class:`MountSpec` (lower layers,
optionally an upper and work dir for later write benchmarks), how to unmount
it and which process serves it. :func:`mounted` times a mount until the first
successful ``stat`` of a probe file and always unmounts, also on Ctrl-C or an
error; :func:`cleanup_all` (registered with atexit) removes whatever is still
mounted and stops its daemon.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MOUNT_TIMEOUT = 300.0
POLL_INTERVAL = 0.002
DAEMON_EXIT_TIMEOUT = 10.0


class Unavailable(Exception):
    """A contender that cannot run here; the message says why."""


@dataclass
class MountSpec:
    lowers: list[str]
    """Layer roots, bottom first."""
    upper: str | None = None
    work: str | None = None

    def lowerdir(self) -> str:
        """The kernel overlay's ``lowerdir=`` value: top first, ``:`` and ``\\`` escaped."""
        return ":".join(d.replace("\\", "\\\\").replace(":", "\\:") for d in reversed(self.lowers))

    def overlay_options(self) -> str:
        options = f"lowerdir={self.lowerdir()}"
        if self.upper:
            options += f",upperdir={self.upper},workdir={self.work}"
        return options


@dataclass
class Mounted:
    contender: "Contender"
    path: str
    pid: int | None
    """The serving daemon (None for an in-kernel filesystem)."""
    mount_seconds: float
    peak_rss_kib: int | None = None

    def read_peak_rss(self) -> int | None:
        """VmHWM of the daemon in KiB (None without a daemon)."""
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


class Contender:
    name = ""
    has_daemon = True

    def check(self) -> None:
        """Raise :class:`Unavailable` if this contender cannot run here."""

    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        raise NotImplementedError

    def mount_env(self) -> dict[str, str] | None:
        return None

    def unmount_command(self, mountpoint: str) -> list[str]:
        if os.geteuid() == 0:
            return ["umount", mountpoint]
        return ["fusermount3", "-u", mountpoint]

    def version(self) -> str:
        return ""


class Layerfs(Contender):
    """layerfs from a source tree, on its default FUSE engine or on the one named."""

    def __init__(self, repo: str, python: str, engine: str | None = None,
                 options: str = "", label: str | None = None) -> None:
        self.repo = repo
        self.python = python
        self.engine = engine
        self.options = options
        """Extra -o options (e.g. noxattrs), named in the contender's name."""
        shown = options.replace(",", "-").replace("=", "-")
        self.name = "-".join(["layerfs", *filter(None, [engine, shown, label])])

    def mount_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = self.repo + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        return env

    def check(self) -> None:
        if not os.path.exists("/dev/fuse"):
            raise Unavailable("no /dev/fuse")
        modules = "layerfs, trio" + (", pyfuse3" if self.engine == "pyfuse3" else "")
        probe = subprocess.run([self.python, "-c", f"import {modules}"],
                               env=self.mount_env(), capture_output=True, text=True)
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
            raise Unavailable(f"{self.python} cannot import layerfs from {self.repo}: {last}")

    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        engine = ["--engine", self.engine] if self.engine else []
        options = spec.overlay_options() + (f",{self.options}" if self.options else "")
        return [self.python, "-m", "layerfs", "mount", *engine, "-o", options, mountpoint]

    def unmount_command(self, mountpoint: str) -> list[str]:
        return [self.python, "-m", "layerfs", "umount", mountpoint]

    def version(self) -> str:
        result = subprocess.run(["git", "-C", self.repo, "describe", "--always", "--dirty"],
                                capture_output=True, text=True)
        return result.stdout.strip()


class KernelOverlay(Contender):
    name = "kernel"
    has_daemon = False

    def check(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("the kernel overlay needs root")
        with open("/proc/filesystems") as filesystems:
            if "overlay" not in filesystems.read():
                subprocess.run(["modprobe", "overlay"], capture_output=True)
        with open("/proc/filesystems") as filesystems:
            if "overlay" not in filesystems.read():
                raise Unavailable("no overlay filesystem in this kernel")

    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        ro = "" if spec.upper else "ro,"
        return ["mount", "-t", "overlay", "overlay", "-o", ro + spec.overlay_options(),
                mountpoint]

    def version(self) -> str:
        return os.uname().release


class FuseOverlayfs(Contender):
    name = "fuse-overlayfs"

    def check(self) -> None:
        if shutil.which("fuse-overlayfs") is None:
            raise Unavailable("fuse-overlayfs not installed (apt-get install fuse-overlayfs)")
        if not os.path.exists("/dev/fuse"):
            raise Unavailable("no /dev/fuse")

    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        return ["fuse-overlayfs", "-o", spec.overlay_options(), mountpoint]

    def version(self) -> str:
        result = subprocess.run(["fuse-overlayfs", "--version"], capture_output=True, text=True)
        for line in (result.stdout + result.stderr).splitlines():
            if "fuse-overlayfs" in line and "version" in line:
                return line.split()[-1]
        return ""


# -- mounting ---------------------------------------------------------------------

_active: dict[str, Mounted] = {}


def _pids_serving(mountpoint: str) -> list[int]:
    """Processes whose command line names ``mountpoint`` (the FUSE daemon)."""
    wanted = os.fsencode(mountpoint)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if wanted in args:
            pids.append(int(entry))
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _force_unmount(mountpoint: str) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    else:
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True)


def _stop(mount: Mounted) -> None:
    """Unmount and make sure the daemon is gone; never raises."""
    try:
        result = subprocess.run(mount.contender.unmount_command(mount.path),
                                capture_output=True, text=True, timeout=60)
        failed = result.returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        failed = True
    if failed or os.path.ismount(mount.path):
        _force_unmount(mount.path)
    if mount.pid is not None and not _wait_gone(mount.pid, DAEMON_EXIT_TIMEOUT):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(mount.pid, sig)
            except ProcessLookupError:
                break
            if _wait_gone(mount.pid, 5.0):
                break
    _active.pop(mount.path, None)
    with contextlib.suppress(OSError):
        os.rmdir(mount.path)


def cleanup_all() -> None:
    """Unmount everything this process mounted (atexit, signals)."""
    for mount in list(_active.values()):
        _stop(mount)


atexit.register(cleanup_all)


class MountFailed(Exception):
    pass


@contextlib.contextmanager
def mounted(contender: Contender, spec: MountSpec, mount_root: Path, probe: str
            ) -> Iterator[Mounted]:
    """Mount, wait for ``probe`` (relative to the mount) to stat, yield, unmount.

    ``Mounted.mount_seconds`` runs from starting the mount command to the
    first successful stat of the probe. ``Mounted.peak_rss_kib`` is read just
    before unmounting.
    """
    mount_root.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"{contender.name}-", dir=mount_root)
    command = contender.mount_command(spec, path)
    probe_path = os.path.join(path, probe)
    mount: Mounted | None = None
    started = time.perf_counter()
    process = subprocess.Popen(command, env=contender.mount_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Registered before it is live so Ctrl-C in the wait still cleans up.
        mount = _active[path] = Mounted(contender, path, None, 0.0)
        while True:
            try:
                os.stat(probe_path)
                break
            except OSError:
                pass
            if process.poll() is not None and process.returncode != 0:
                error = process.stderr.read().decode(errors="replace").strip()
                raise MountFailed(f"{' '.join(command[:3])}... exited {process.returncode}: "
                                  f"{error.splitlines()[-1] if error else 'no message'}")
            if time.perf_counter() - started > MOUNT_TIMEOUT:
                raise MountFailed(f"{probe} not visible after {MOUNT_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)
        mount.mount_seconds = time.perf_counter() - started
        process.communicate(timeout=60)
        if contender.has_daemon:
            pids = _pids_serving(path)
            mount.pid = pids[0] if len(pids) == 1 else None
        yield mount
        mount.peak_rss_kib = mount.read_peak_rss()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if mount is not None:
            if mount.pid is None and contender.has_daemon:
                pids = _pids_serving(path)
                mount.pid = pids[0] if len(pids) == 1 else None
            _stop(mount)
