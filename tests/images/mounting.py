"""Local test helpers: mount an image with ``layerfs mount -f`` in a subprocess (always
unmounted and stopped afterwards), run the CLI, and snapshot a tree for comparison.

Kept small and local until the shared helpers of tests/support are on this branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 60.0


def env() -> dict[str, str]:
    result = dict(os.environ)
    result["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + result.get("PYTHONPATH", "")
    return result


def run_layerfs(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layerfs", *args], env=env(),
                          capture_output=True, text=True, timeout=timeout)


def _mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def _unmount(path: Path) -> None:
    if _mounted(path):
        command = ["umount", "-l"] if os.geteuid() == 0 else ["fusermount3", "-u", "-z"]
        subprocess.run(command + [str(path)], capture_output=True)


@contextlib.contextmanager
def mounted(image: str, mountpoint: Path, *args: str) -> Iterator[Path]:
    """``layerfs mount -f ARGS IMAGE MOUNTPOINT`` for the duration of the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "layerfs", "mount", "-f", "--quiet",
                                *args, image, str(mountpoint)], env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not _mounted(mountpoint):
            if process.poll() is not None:
                raise RuntimeError(f"layerfs mount exited {process.returncode}: "
                                   f"{process.stderr.read() if process.stderr else ''}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{mountpoint} not mounted after {MOUNT_TIMEOUT}s")
            time.sleep(0.05)
        yield mountpoint
    finally:
        _unmount(mountpoint)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def snapshot(root: Path, *, owners: bool = True) -> dict[str, tuple]:
    """path -> (type, mode, [uid, gid,] size, content sha256 | link target | rdev)."""
    tree: dict[str, tuple] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(full, base))
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as data:
                    detail: object = hashlib.sha256(data.read()).hexdigest()
                size = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                detail, size = os.fsdecode(os.readlink(full)), 0
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail, size = st.st_rdev, 0
            else:
                detail, size = None, 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            owner = (st.st_uid, st.st_gid) if owners else ()
            tree[rel] = (kind, stat.S_IMODE(st.st_mode), *owner, size, detail)
    return tree


def names(root: Path) -> set[str]:
    return set(snapshot(root, owners=False))
