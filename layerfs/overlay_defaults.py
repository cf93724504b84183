"""The kernel overlay's defaults, as its module parameters say.

``mount -t overlay`` takes redirect_dir, index, metacopy and xino from
``/sys/module/overlay/parameters/`` when the options do not name them;
``layerfs-overlay`` does the same, so it behaves as the kernel overlay
would on this machine. Without the module (no such directory) the
defaults are layerfs's own. Of the four redirect_dir and index change what
layerfs does (redirect_dir off/follow/nofollow: renaming a lower dir is EXDEV;
index on: hard-linked lower files are copied up through the kernel's inode
index, see layerfs/copyup.py); layerfs never writes metacopies and numbers
inodes itself (xino's promise), whatever they say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PARAMETERS = "/sys/module/overlay/parameters"


@dataclass(frozen=True)
class OverlayDefaults:
    redirect_dir: str | None = None
    """on, follow or nofollow (None: the module says nothing)."""
    index: bool | None = None
    metacopy: bool | None = None
    xino: str | None = None
    """auto or off."""


def _flag(directory: Path, name: str) -> bool | None:
    try:
        return (directory / name).read_text().strip().startswith("Y")
    except OSError:
        return None


def read_defaults(parameters: str = PARAMETERS) -> OverlayDefaults:
    directory = Path(parameters)
    redirect = _flag(directory, "redirect_dir")
    follow = _flag(directory, "redirect_always_follow")
    xino = _flag(directory, "xino_auto")
    return OverlayDefaults(
        # The kernel's ovl_redirect_mode_def().
        redirect_dir=None if redirect is None else
        "on" if redirect else "follow" if follow else "nofollow",
        index=_flag(directory, "index"),
        metacopy=_flag(directory, "metacopy"),
        xino=None if xino is None else "auto" if xino else "off")
