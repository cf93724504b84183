"""The FUSE engines a mount can run on, chosen by name.

An engine mounts a filesystem (:class:`layerfs.fuse.api.Operations`), turns
the kernel's requests into calls of it and unmounts. ``pyfuse3`` goes
through libfuse (:mod:`.pyfuse3_adapter`); ``native`` speaks the protocol
itself (:mod:`layerfs.fuse.engine`). Each is imported only when chosen.
"""

from __future__ import annotations

import os
from typing import Protocol

from ..errors import MountError, UsageError
from ..fuse import api
from ..options import ENGINES

DEFAULT_ENGINE = "native"
ENGINE_VARIABLE = "LAYERFS_ENGINE"
"""The environment variable that names the engine when no option does."""


class Engine(Protocol):
    """The life of one mount: ``mount`` (before the daemon forks), ``serve``
    (in trio, until unmounted or terminated), ``close`` (always, at the end)."""

    name: str
    zero_message_opens: bool
    """Whether the kernel may open files and directories without asking
    (OPEN/OPENDIR answered ENOSYS); the filesystem then serves by inode."""

    def mount(self, ops: api.Operations, mountpoint: str, options: set[str]) -> None:
        """Mount at ``mountpoint`` with mount ``options`` (MountError if it cannot)."""

    async def serve(self) -> None:
        """Answer requests; call ``ops.init(notifier)`` once the kernel's INIT is
        answered. Returns when the mount is gone or :meth:`terminate` was called."""

    def terminate(self) -> None:
        """Make :meth:`serve` return (from the trio loop, on a signal)."""

    def close(self, unmount: bool) -> None:
        """Let go of the connection, unmounting first if ``unmount``."""


def default_engine() -> str:
    return os.environ.get(ENGINE_VARIABLE) or DEFAULT_ENGINE


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise UsageError(f"engine {name!r}: expected one of {', '.join(ENGINES)}")
    return name


def open_engine(name: str, *, debug: bool) -> Engine:
    """The engine called ``name``, ready to mount."""
    check_engine(name)
    if name == "pyfuse3":
        from .pyfuse3_adapter import Pyfuse3Engine
        return Pyfuse3Engine(debug=debug)
    try:
        from ..fuse.engine import NativeEngine  # type: ignore[import-not-found]
    except ImportError as exc:
        raise MountError(f"engine 'native': not available in this build ({exc})") from None
    engine: Engine = NativeEngine(debug=debug)
    if not hasattr(engine, "zero_message_opens"):
        engine.zero_message_opens = True  # what the native engine is for
    return engine
