"""Mounting for tests: layerfs in a subprocess and the kernel overlay, always torn down.

Each helper is a context manager that unmounts (lazily if need be) and
stops the daemon when the block ends, whether it ended by success, a failed
assertion or a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from layerfs import treediff
from layerfs.explore.mounts import force_unmount, is_mounted, stop_daemon

REPO_ROOT = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 30.0


def layerfs_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def layerfs_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerfs", *args]


def run_layerfs(*args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(layerfs_command(*args), env=layerfs_env(), capture_output=True,
                          text=True, check=check, timeout=kwargs.pop("timeout", 120), **kwargs)


def wait_for_mount(path: Path, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        if is_mounted(path):
            return
        if process is not None and process.poll() is not None:
            err = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"layerfs exited with {process.returncode} before mounting: {err}")
        time.sleep(0.05)
    raise TimeoutError(f"{path} not mounted after {MOUNT_TIMEOUT}s")


@contextlib.contextmanager
def layerfs_mounted(mountpoint: Path, *args: str, user: str | None = None,
                    check_lowers: bool = True) -> Iterator[subprocess.Popen]:
    """Run ``layerfs mount -f ARGS MOUNTPOINT`` until the block ends.

    ``args`` are the mount arguments before the mountpoint (an image path,
    ``--layer`` options, ``-o`` options). Afterwards every lower layer and
    image named in them must be exactly as before (lower layers are never
    written); pass ``check_lowers=False`` for a test that changes them itself.
    """
    watched = ({path: _fingerprint(path) for path in lower_inputs(args) if path.exists()}
               if check_lowers else {})
    command = layerfs_command("mount", "-f", *args, str(mountpoint))
    if user is not None:
        command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={REPO_ROOT}", *command]
    process = subprocess.Popen(command, env=layerfs_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for_mount(mountpoint, process)
        yield process
    finally:
        force_unmount(mountpoint)
        stop_daemon(process)
        if process.stderr:
            process.stderr.close()
        if process.stdout:
            process.stdout.close()
    changed = [str(path) for path, before in watched.items() if _fingerprint(path) != before]
    assert not changed, f"layerfs changed lower layers or images: {changed}"


# Options of `layerfs mount` that take a value which is not a lower layer.
_VALUE_OPTIONS = {"--upper", "--work", "--log", "--cache-dir", "--image", "--format",
                  "--platform", "--docker-root"}


def lower_inputs(args: Sequence[str]) -> list[Path]:
    """The layer dirs and image paths named in ``layerfs mount`` arguments."""
    found: list[Path] = []
    items = iter(args)
    for arg in items:
        if arg == "--layer":
            found.append(Path(next(items)))
        elif arg == "-o":
            for option in re.split(r"(?<!\\),", next(items)):
                if option.startswith("lowerdir="):
                    found += [Path(p.replace("\\:", ":"))
                              for p in re.split(r"(?<!\\):", option[len("lowerdir="):])]
        elif arg in _VALUE_OPTIONS:
            next(items)
        elif not arg.startswith("-") and os.path.exists(arg):
            found.append(Path(arg))
    return found


def _fingerprint(path: Path) -> object:
    if path.is_dir():
        return treediff.snapshot(path)
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_mode, treediff.content_hash(os.fsencode(path)))


def unmount_below(directory: Path) -> None:
    """Detach every mount below ``directory`` (a daemon's leftovers), deepest first."""
    prefix = str(directory).rstrip("/") + "/"
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(prefix):
            force_unmount(target)


def kernel_overlay_available() -> str | None:
    """None if the kernel overlay can be mounted here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the kernel overlay needs root"
    with open("/proc/filesystems") as filesystems:
        if not any(line.split()[-1] == "overlay" for line in filesystems if line.strip()):
            return "the kernel has no overlay filesystem"
    return None


def _escape_lowerdir(path: str) -> str:
    if "," in path:
        raise ValueError(f"{path}: ',' cannot appear in a kernel overlay mount option")
    return path.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def kernel_overlay_mounted(mountpoint: Path, layers_bottom_first: Sequence[Path],
                           extra: Sequence[str] = ()) -> Iterator[None]:
    """Mount the kernel overlay read-only over the layers (bottom first)."""
    layers = [str(p) for p in layers_bottom_first]
    spare = None
    if len(layers) < 2:
        # Without an upper dir the kernel wants two lower dirs (FORMATS.md 8.2).
        spare = Path(mountpoint).parent / (Path(mountpoint).name + ".empty-bottom")
        spare.mkdir(exist_ok=True)
        layers.insert(0, str(spare))
    lowerdir = ":".join(_escape_lowerdir(p) for p in reversed(layers))
    options = ",".join(["ro", f"lowerdir={lowerdir}", *extra])
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(mountpoint)],
                   check=True, capture_output=True)
    try:
        yield
    finally:
        force_unmount(mountpoint)
        if spare is not None:
            shutil.rmtree(spare, ignore_errors=True)
