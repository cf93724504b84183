"""Mounting for ``compare`` and ``commit``: layerfs in a subprocess and the kernel overlay,
each a context manager that always unmounts (lazily if busy) and stops the daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import MountError

MOUNT_TIMEOUT = 120.0


def is_mounted(path: str | os.PathLike[str]) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts", "rb") as mounts:
        for line in mounts:
            point = line.split()[1].decode("unicode_escape").encode("latin-1")
            if os.fsdecode(point) == target:
                return True
    return False


def force_unmount(path: str | os.PathLike[str]) -> None:
    """Detach whatever is mounted at ``path`` (no error if nothing is)."""
    if not is_mounted(path):
        return
    command = ["umount", "-l"] if os.geteuid() == 0 else ["fusermount3", "-u", "-z"]
    subprocess.run(command + [os.fspath(path)], capture_output=True)


def stop_daemon(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM a daemon and wait for it; SIGKILL if it is not gone after ``timeout`` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextlib.contextmanager
def layerfs_mounted(mountpoint: Path, mount_args: Sequence[str]) -> Iterator[Path]:
    """``python -m layerfs mount -f --quiet ARGS MOUNTPOINT`` until the block ends."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as errors:
        command = [sys.executable, "-m", "layerfs", "mount", "-f", "--quiet", *mount_args,
                   str(mountpoint)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + MOUNT_TIMEOUT
            while not is_mounted(mountpoint):
                if process.poll() is not None:
                    errors.seek(0)
                    message = errors.read().decode(errors="replace").strip()
                    raise MountError(f"layerfs mount failed: {message}")
                if time.monotonic() > deadline:
                    raise MountError(f"{mountpoint}: layerfs not mounted after "
                                     f"{MOUNT_TIMEOUT:.0f}s")
                time.sleep(0.05)
            yield mountpoint
        finally:
            force_unmount(mountpoint)
            stop_daemon(process)


@contextlib.contextmanager
def kernel_overlay_mounted(mountpoint: Path, layers_bottom_first: Sequence[str],
                           links: Path, *, upper: str | None = None,
                           work: str | None = None, options: Sequence[str] = ()
                           ) -> Iterator[Path]:
    """The kernel overlay over the layers (read-only unless ``upper`` is given).

    The layers are named through short symlinks in ``links`` (mount options hold
    one page, and ``:`` or ``,`` in a path would need escaping).
    """
    if os.geteuid() != 0:
        raise MountError("the kernel overlay needs root")
    links.mkdir(parents=True, exist_ok=True)
    names = []
    for number, layer in enumerate(layers_bottom_first):
        link = links / str(number)
        os.symlink(layer, link)
        names.append(str(link))
    lowerdir = ":".join(reversed(names))
    attempts = [lowerdir]
    if len(names) < 2 and upper is None:
        # Without an upper dir the kernel wants two lower dirs. An empty data-only
        # lower (``::``, Linux >= 6.5) leaves the root a plain, unmerged dir; older
        # kernels get an empty bottom layer (the root then shows nlink 1).
        empty = links / "empty"
        empty.mkdir(exist_ok=True)
        attempts = [f"{lowerdir}::{empty}", f"{lowerdir}:{empty}"]
    mountpoint.mkdir(parents=True, exist_ok=True)
    for lower in attempts:
        given = [f"lowerdir={lower}", *options]
        if upper is None:
            given.insert(0, "ro")
        else:
            given += [f"upperdir={upper}", f"workdir={work}"]
        result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(given),
                                 str(mountpoint)], capture_output=True, text=True)
        if result.returncode == 0:
            break
    else:
        raise MountError(f"kernel overlay mount failed: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        force_unmount(mountpoint)
