"""Building test images with the real tools, as users build them: umoci makes each
layer from the change between an unpacked tag and the edited tree (real whiteouts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

Change = Callable[[Path], None]
"""Edits an unpacked rootfs; what it does becomes one layer."""


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def run(*command: str | os.PathLike[str]) -> str:
    """Run a tool; its stdout, or a RuntimeError with its stderr."""
    result = subprocess.run([os.fspath(c) for c in command], capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {result.stderr.strip()}")
    return result.stdout


def rootless() -> list[str]:
    """umoci's flag for unpacking and inserting as a user without root."""
    return [] if os.geteuid() == 0 else ["--rootless"]


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """``umoci unpack`` of ``layout:tag`` into ``bundle``: its rootfs, the tree a mount of
    the tag must show."""
    run("umoci", "unpack", *rootless(), "--image", f"{layout}:{tag}", bundle)
    return bundle / "rootfs"


def umoci_layer(layout: Path, base: str, tag: str, bundle: Path, change: Change,
                *repack_options: str) -> None:
    """Tag ``tag`` is ``base`` plus one layer, what ``change`` does to its unpacked rootfs
    (``bundle`` is the scratch dir, removed afterwards)."""
    change(umoci_unpack(layout, base, bundle))
    run("umoci", "repack", *repack_options, "--image", f"{layout}:{tag}", bundle)
    shutil.rmtree(bundle)
